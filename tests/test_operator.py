"""The real kopf operator against kmock's Kubernetes emulator.

The test plays the kubelet: it patches the StatefulSets' and DaemonSet's status and
creates worker pods on nodes, then checks what the operator did.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from typing import Any

import kmock
import pytest
import pytest_asyncio

os.environ.setdefault("FLUIDV_RESYNC_SECONDS", "0.3")

import kopf  # noqa: E402
import kubernetes  # noqa: E402

from fluid_core.operator import handlers  # noqa: E402,F401 - registers the handlers
from fluid_core.operator.kube import KubeClient, Ref  # noqa: E402

API = "data.fluid.io/v1alpha1"
NS = "default"
pytestmark = pytest.mark.asyncio


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "spec": spec,
            "metadata": {"name": name, "namespace": NS, "uid": str(uuid.uuid4()), "resourceVersion": "1"}}


@pytest_asyncio.fixture
async def cluster(kmock: kmock.KubernetesEmulator, tmp_path, monkeypatch):
    """kmock with our resources registered, a client for it, and the operator running."""
    kmock.resources.load_bundled()
    for plural, kind in (("datasets", "Dataset"), ("vineyardruntimes", "VineyardRuntime")):
        kmock.resources[f"{API}/{plural}"] = kmock_info(kind)
    config_file = tmp_path / "kubeconfig"
    config_file.write_text(
        "kind: Config\ncurrent-context: k\nclusters: [{name: k, cluster: {server: '%s'}}]\n"
        "contexts: [{name: k, context: {cluster: k, user: k}}]\n"
        "users: [{name: k, user: {token: test}}]\n" % kmock.url
    )
    monkeypatch.setenv("KUBECONFIG", str(config_file))
    configuration = kubernetes.client.Configuration()
    configuration.host = str(kmock.url).rstrip("/")
    kube = KubeClient(kubernetes.client.ApiClient(configuration))
    handlers.use_client(kube)
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    settings.watching.client_timeout = 2
    settings.watching.server_timeout = 2
    # The operator runs in its own thread and event loop, as in production; kmock
    # serves from the test's loop.
    stop, ready = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def run_operator() -> None:
        try:
            asyncio.run(kopf.operator(settings=settings, namespaces=[NS], stop_flag=stop,
                                      ready_flag=ready, standalone=True))
        except asyncio.CancelledError:
            pass  # kopf ends its tasks as cancelled when the stop flag is set
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            failure.append(exc)

    thread = threading.Thread(target=run_operator, name="operator", daemon=True)
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 30), "the operator did not start"
        yield kmock, kube
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
        handlers.use_client(None)
        assert not thread.is_alive(), "the operator did not stop within 30 s"
        if failure:
            raise failure[0]


def kmock_info(kind: str) -> kmock.ResourceInfo:
    return kmock.ResourceInfo(kind=kind, namespaced=True, subresources={"status"},
                              verbs={"list", "watch", "get", "create", "patch", "delete"})


async def call(fn, *args):
    return await asyncio.to_thread(fn, *args)


async def eventually(predicate, timeout: float = 20.0, message: str = ""):
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await asyncio.to_thread(predicate)
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out: {message} (last: {last!r})")


def status_of(kube: KubeClient, kind: str, name: str) -> dict[str, Any]:
    return (kube.get(Ref(API, kind, NS, name)) or {}).get("status") or {}


def exists(kube: KubeClient, api: str, kind: str, name: str, namespace: str | None = NS) -> bool:
    return kube.get(Ref(api, kind, namespace, name)) is not None


def play_kubelet(kube: KubeClient, kind: str, name: str, status: dict[str, Any]) -> None:
    kube.patch(Ref("apps/v1", kind, NS, name), {"status": status})


def add_node(kube: KubeClient, name: str) -> None:
    kube.request("POST", Ref("v1", "Node", None).path(),
                 {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {}}})


def add_worker_pod(kube: KubeClient, runtime: str, index: int, node: str) -> None:
    from vineyard_runtime.kube.manifests import labels  # noqa: PLC0415
    from vineyard_runtime.kube.manifests import KubeRuntime, Image  # noqa: PLC0415

    rt = KubeRuntime(name=runtime, namespace=NS, workers=1, size="1Gi",
                     worker_image=Image("x", "y"), master_image=Image("x", "y"), bridge_image=Image("x", "y"))
    kube.request("POST", Ref("v1", "Pod", NS).path(), {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{runtime}-worker-{index}", "namespace": NS, "labels": labels(rt, "worker")},
        "spec": {"nodeName": node, "containers": [{"name": "vineyardd", "image": "x"}]},
    })


def node_labels(kube: KubeClient, name: str) -> dict[str, str]:
    return (kube.get(Ref("v1", "Node", None, name)) or {}).get("metadata", {}).get("labels") or {}


async def test_dataset_and_runtime_reach_bound_then_scale_and_delete(cluster):
    emulator, kube = cluster
    for node in ("n1", "n2", "n3"):
        await call(add_node, kube, node)
    await call(kube.request, "POST", Ref(API, "Dataset", NS).path(), resource("Dataset", "demo", {}))
    await call(kube.request, "POST", Ref(API, "VineyardRuntime", NS).path(),
               resource("VineyardRuntime", "demo", {"replicas": 2}))

    await eventually(lambda: exists(kube, "apps/v1", "StatefulSet", "demo-master"), message="master created")
    assert not await call(exists, kube, "apps/v1", "StatefulSet", "demo-worker"), "workers wait for the master"
    assert (await call(status_of, kube, "Dataset", "demo")).get("phase") == "NotBound"

    await call(play_kubelet, kube, "StatefulSet", "demo-master", {"replicas": 1, "readyReplicas": 1})
    await eventually(lambda: exists(kube, "apps/v1", "StatefulSet", "demo-worker"), message="workers created")
    for api, kind, name, namespace in (("v1", "ConfigMap", "demo-rpc-conf", NS),
                                       ("networking.k8s.io/v1", "NetworkPolicy", "demo-vineyard", NS),
                                       ("apps/v1", "DaemonSet", "demo-fuse", NS),
                                       ("v1", "PersistentVolume", "default-demo", None),
                                       ("v1", "PersistentVolumeClaim", "demo", NS)):
        await eventually(lambda: exists(kube, api, kind, name, namespace), message=f"{kind}/{name} created")

    await call(play_kubelet, kube, "StatefulSet", "demo-worker", {"replicas": 2, "readyReplicas": 2})
    await call(play_kubelet, kube, "DaemonSet", "demo-fuse", {"desiredNumberScheduled": 2, "numberReady": 2})
    await call(add_worker_pod, kube, "demo", 0, "n1")
    await call(add_worker_pod, kube, "demo", 1, "n2")
    status = await eventually(
        lambda: (s := status_of(kube, "VineyardRuntime", "demo")).get("workerPhase") == "Ready"
        and s.get("fusePhase") == "Ready" and s, message="runtime ready")
    assert status["masterPhase"] == "Ready"
    assert {c["type"]: c["status"] for c in status["conditions"]}["WorkersReady"] == "True"
    dataset = await eventually(lambda: (s := status_of(kube, "Dataset", "demo")).get("phase") == "Bound" and s,
                               message="dataset bound")
    assert dataset["runtimes"][0] == {"name": "demo", "namespace": NS, "category": "Accelerate", "type": "vineyard"}
    await eventually(lambda: node_labels(kube, "n1").get("fluid.io/s-default-demo") == "true", message="n1 labelled")
    assert (await call(node_labels, kube, "n2")).get("fluid.io/s-vineyard-default-demo") == "true"
    assert "fluid.io/s-default-demo" not in await call(node_labels, kube, "n3")

    # scaling: the StatefulSet follows, readiness is partial until the kubelet catches up
    await call(kube.patch, Ref(API, "VineyardRuntime", NS, "demo"), {"spec": {"replicas": 3}})
    await eventually(lambda: kube.get(Ref("apps/v1", "StatefulSet", NS, "demo-worker"))["spec"]["replicas"] == 3,
                     message="scaled to 3")
    await call(play_kubelet, kube, "StatefulSet", "demo-worker", {"replicas": 3, "readyReplicas": 2})
    await eventually(lambda: status_of(kube, "VineyardRuntime", "demo").get("workerPhase") == "PartialReady",
                     message="partially ready")

    # replayed events (kmock replays every object on each watch reconnect) made no duplicates
    seen = emulator[kmock.resource("apps/v1/statefulsets")]
    posts = [seen[i] for i in range(len(seen)) if str(seen[i].method).upper().endswith("POST")]
    assert len(posts) == 2, [str(r.url) for r in posts]

    # deletion removes every object and the node labels
    await call(kube.delete, Ref(API, "VineyardRuntime", NS, "demo"))
    await eventually(lambda: not exists(kube, "apps/v1", "StatefulSet", "demo-worker"), message="workers deleted")
    for api, kind, name, namespace in (("apps/v1", "StatefulSet", "demo-master", NS),
                                       ("v1", "ConfigMap", "demo-rpc-conf", NS),
                                       ("v1", "PersistentVolume", "default-demo", None),
                                       ("apps/v1", "DaemonSet", "demo-fuse", NS)):
        assert not await call(exists, kube, api, kind, name, namespace), f"{kind}/{name} left behind"
    await eventually(lambda: "fluid.io/s-default-demo" not in node_labels(kube, "n1"), message="labels removed")


async def test_invalid_runtime_gets_a_condition_and_nothing_is_created(cluster):
    _, kube = cluster
    await call(kube.request, "POST", Ref(API, "Dataset", NS).path(), resource("Dataset", "bad", {}))
    await call(kube.request, "POST", Ref(API, "VineyardRuntime", NS).path(), resource(
        "VineyardRuntime", "bad", {"tieredstore": {"levels": [{"mediumtype": "MEM", "quota": "2Gx"}]}}))
    status = await eventually(lambda: status_of(kube, "VineyardRuntime", "bad").get("conditions"),
                              message="condition written")
    ready = {c["type"]: c for c in status}["Ready"]
    assert ready["reason"] == "InvalidSpec" and "quota" in ready["message"] and "not a size" in ready["message"]
    await asyncio.sleep(1)
    assert not await call(exists, kube, "apps/v1", "StatefulSet", "bad-master")
    events = await call(kube.list, Ref("v1", "Event", NS))
    assert any(e.get("reason") == "InvalidSpec" for e in events)


async def test_runtime_without_dataset_waits_and_creates_nothing(cluster):
    _, kube = cluster
    await call(kube.request, "POST", Ref(API, "VineyardRuntime", NS).path(),
               resource("VineyardRuntime", "orphan", {}))
    conditions = await eventually(lambda: status_of(kube, "VineyardRuntime", "orphan").get("conditions"),
                                  message="condition written")
    assert {c["type"]: c for c in conditions}["Ready"]["reason"] == "DatasetNotFound"
    assert not await call(exists, kube, "apps/v1", "StatefulSet", "orphan-master")
    await call(kube.request, "POST", Ref(API, "Dataset", NS).path(), resource("Dataset", "orphan", {}))
    await eventually(lambda: exists(kube, "apps/v1", "StatefulSet", "orphan-master"), message="created once the dataset exists")


async def test_dataset_deletion_waits_for_pods_using_it(cluster):
    _, kube = cluster
    await call(kube.request, "POST", Ref(API, "Dataset", NS).path(), resource("Dataset", "used", {}))
    await eventually(lambda: status_of(kube, "Dataset", "used").get("phase") == "NotBound", message="reconciled")
    await call(kube.request, "POST", Ref("v1", "Pod", NS).path(), {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "trainer", "namespace": NS},
        "spec": {"containers": [{"name": "c", "image": "x"}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "used"}}]}})
    await call(kube.delete, Ref(API, "Dataset", NS, "used"))
    await asyncio.sleep(1.5)
    body = await call(kube.get, Ref(API, "Dataset", NS, "used"))
    assert body is not None and handlers.FINALIZER in body["metadata"].get("finalizers", [])
    events = await call(kube.list, Ref("v1", "Event", NS))
    assert any(e.get("reason") == "DeletionBlocked" and "trainer" in e.get("message", "") for e in events)
    await call(kube.delete, Ref("v1", "Pod", NS, "trainer"))
    await eventually(lambda: handlers.FINALIZER not in ((kube.get(Ref(API, "Dataset", NS, "used")) or {})
                                                         .get("metadata", {}).get("finalizers") or []),
                     message="released once no pod uses it")
