"""Kubernetes for real: two real nodes (containerd, kubelet, kube-proxy, each in network and
mount namespaces of its own; ``support.realcluster``) run the project's image, built
without a registry. The chart is installed by helm and its operator runs in-cluster, under
its ServiceAccount, serving the webhook from its pod; a Dataset and its VineyardRuntime
bind with an etcd master pod, a vineyardd worker and a bridge on each node; pods on both
nodes hand each other objects through the mounted dataset.

The tests of this module share one cluster and run in order: each builds on what the
one before left (the chart, then the dataset, then its objects).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from control_plane import binaries, project_crds

from fluid_core.operator.kube import KubeClient, Ref
from support.realcluster import RealCluster

pytestmark = pytest.mark.timeout(1800)

CHART = str(Path(__file__).resolve().parent.parent / "charts" / "fluid-vineyard")
RELEASE, SYSTEM, NS, DATASET = "fv", "fluid-system", "team", "shared"
API = "data.fluid.io/v1alpha1"
FRAME_ROWS = 1 << 24  # two float64 columns: 256 MiB


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with RealCluster(tmp_path_factory.mktemp("real"), nodes=2, crds=project_crds()) as real:
        print(f"real cluster up: {', '.join(f'{k} {v:.1f} s' for k, v in real.timings.items())}")
        yield real


def tool(cluster: RealCluster, name: str, *args: str, check: bool = True, stdin: str | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``helm`` or ``kubectl`` of the built control plane, as the administrator."""
    plane = cluster.control_plane
    home = plane.workdir / "home"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(plane.kubeconfig),
           "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    done = subprocess.run([str(binaries() / "bin" / name), *args], capture_output=True, text=True, env=env,
                          input=stdin, timeout=timeout)
    if check:
        assert done.returncode == 0, f"{name} {' '.join(args)}: {done.stdout[-2000:]} {done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def kube(cluster: RealCluster) -> KubeClient:
    """The chart, installed by helm, its operator running in-cluster from the project image."""
    repository, tag = cluster.images["project"].rsplit(":", 1)
    tool(cluster, "helm", "install", RELEASE, CHART, "-n", SYSTEM, "--create-namespace", "--wait",
         "--timeout", "5m", "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
         "--set", "webhook.failurePolicy=Fail")
    client = KubeClient(cluster.control_plane.api_client())
    client.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    return client


def pods(kube: KubeClient, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    query = f"?labelSelector={selector}" if selector else ""
    return (kube.request("GET", f"/api/v1/namespaces/{namespace}/pods{query}") or {}).get("items", [])


def ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and all(c.get("ready") for c in status.get("containerStatuses") or [])


def status_of(kube: KubeClient, kind: str, name: str) -> dict[str, Any]:
    return (kube.get(Ref(API, kind, NS, name)) or {}).get("status") or {}


def describe(kube: KubeClient, namespace: str = NS) -> str:
    """The namespace's pods, their nodes, phases and restarts (for failure messages)."""
    return json.dumps([(p["metadata"]["name"], p["spec"].get("nodeName"), (p.get("status") or {}).get("phase"),
                        [c.get("restartCount") for c in (p.get("status") or {}).get("containerStatuses") or []])
                       for p in pods(kube, namespace)])


def run_pod(cluster: RealCluster, kube: KubeClient, name: str, code: str, *, node: str | None = None,
            annotations: dict[str, str] | None = None, timeout: float = 300) -> tuple[str, str]:
    """Run ``code`` with python3 in a pod of the project image that mounts the dataset at
    /data (the webhook sets VINEYARD_CONFIG); its node and its output once it succeeded."""
    pod: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations or {}},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": cluster.images["project"], "imagePullPolicy": "IfNotPresent",
            "command": ["python3", "-c", textwrap.dedent(code)],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": DATASET}}]}}
    if node:
        pod["spec"]["nodeName"] = node
    kube.request("POST", f"/api/v1/namespaces/{NS}/pods", pod)

    def ended() -> dict[str, Any] | None:
        found = kube.get(Ref("v1", "Pod", NS, name)) or {}
        return found if (found.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    done = cluster.control_plane.wait_for(ended, timeout=timeout, message=f"pod {name} ended: {describe(kube)}")
    logs = tool(cluster, "kubectl", "logs", "-n", NS, name).stdout
    assert done["status"]["phase"] == "Succeeded", f"{name} failed: {logs[-3000:]}"
    return done["spec"]["nodeName"], logs


def test_the_operator_runs_in_cluster_from_the_image(cluster: RealCluster, kube: KubeClient) -> None:
    operator = pods(kube, SYSTEM, "app.kubernetes.io/component=operator")
    assert len(operator) == 1, operator
    spec = operator[0]["spec"]
    assert spec["serviceAccountName"] == RELEASE
    assert spec["containers"][0]["image"] == cluster.images["project"]
    assert spec["nodeName"] in cluster.node_names
    webhook = kube.request("GET", f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
                                  f"{RELEASE}-placement")
    assert webhook["webhooks"][0]["clientConfig"]["service"]["name"], "the API server calls the operator's pod"


def test_a_dataset_and_its_runtime_bind_on_the_real_nodes(cluster: RealCluster, kube: KubeClient) -> None:
    for kind, spec in (("Dataset", {}), ("VineyardRuntime", {"replicas": 2, "tieredstore": {"levels": [
            {"mediumtype": "MEM", "quota": "1Gi"}]}})):
        kube.request("POST", f"/apis/{API}/namespaces/{NS}/{kind.lower()}s",
                     {"apiVersion": API, "kind": kind, "metadata": {"name": DATASET}, "spec": spec})
    wait = cluster.control_plane.wait_for
    wait(lambda: status_of(kube, "Dataset", DATASET).get("phase") == "Bound", timeout=300,
         message=f"the dataset Bound: {describe(kube)}")
    # every node's bridge links a serving worker: clients on any node connect by IPC
    wait(lambda: status_of(kube, "VineyardRuntime", DATASET).get("fusePhase") == "Ready", timeout=120,
         message=f"the bridges ready: {describe(kube)}")
    by_role = {role: pods(kube, NS, f"app.kubernetes.io/component={role}") for role in ("master", "worker", "fuse")}
    assert len(by_role["master"]) == 1 and ready(by_role["master"][0])
    for role in ("worker", "fuse"):
        assert sorted(p["spec"]["nodeName"] for p in by_role[role]) == cluster.node_names, role
        assert all(ready(p) for p in by_role[role]), role
    listed = tool(cluster, "kubectl", "get", "datasets,vineyardruntimes", "-n", NS).stdout
    assert "Bound" in listed and listed.count("Ready") == 3, listed


PRODUCE = f"""
    import numpy as np, pandas as pd, objects
    store = objects.connect()  # through the dataset's vineyard-config.yaml ($VINEYARD_CONFIG)
    assert store.target.kind == "ipc", store.target.describe()
    frame = pd.DataFrame({{"a": np.arange({FRAME_ROWS}, dtype=np.float64), "b": np.ones({FRAME_ROWS})}})
    store.put(frame, "{NS}/{DATASET}/frame")
    store.put(np.arange(1000, dtype=np.int64).reshape(10, 100), "{NS}/{DATASET}/tensor")
    print("put on", store.node)
"""
CONSUME = f"""
    import numpy as np, objects
    store = objects.connect()
    frame, tensor = store.get("{NS}/{DATASET}/frame"), store.get("{NS}/{DATASET}/tensor")
    assert frame.shape == ({FRAME_ROWS}, 2) and frame["a"].to_numpy()[-1] == {FRAME_ROWS - 1}
    assert float(frame["a"].sum()) == float(np.arange({FRAME_ROWS}, dtype=np.float64).sum())
    assert float(frame["b"].sum()) == {FRAME_ROWS} and tensor.shape == (10, 100) and int(tensor.sum()) == 499500
    print("read on", store.node, "from", store.info("{NS}/{DATASET}/frame").node)
"""


def test_objects_cross_between_pods_on_different_nodes(cluster: RealCluster, kube: KubeClient) -> None:
    producer_node, logs = run_pod(cluster, kube, "producer", PRODUCE, node=cluster.node_names[0])
    assert f"put on {producer_node}" in logs
    # placed by the real scheduler, through the operator's webhook, on the node holding the bytes
    placed_node, logs = run_pod(cluster, kube, "consumer-placed", CONSUME,
                                annotations={"data.fluid.io/consumes": "frame,tensor"})
    assert placed_node == producer_node, logs
    assert f"read on {producer_node} from {producer_node}" in logs
    other = cluster.node_names[1]
    _, logs = run_pod(cluster, kube, "consumer-other-node", CONSUME, node=other)
    assert f"read on {other} from {producer_node}" in logs
