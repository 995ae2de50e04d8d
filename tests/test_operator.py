"""The real kopf operator against kmock's Kubernetes emulator, for what the real control
plane of the tests does not show (``test_kube_control_plane.py`` runs the rest there):

- the test plays the kubelet to the letter: partial readiness, a Job's pod that fails
  for good on a chosen node, a restore that fails three times (under KWOK's default
  stages, which the control plane here runs, every Job's pod succeeds);
- the operator's own check of a spec, given specs that the CRDs' schemas (the project's
  and Fluid's) refuse at a real API server: a malformed quota, an unknown policy;
- the placement feed and OnEvent read a real local cluster's etcd at a fast refresh.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import pytest

os.environ.setdefault("FLUIDV_RESYNC_SECONDS", "0.3")
os.environ.setdefault("FLUIDV_FULL_APPLY_SECONDS", "2")

from fluid_core.operator import runtimes
from fluid_core.kube import KubeClient, Ref
from fluid_core.operator.testing import EmulatedCluster
from vineyard_runtime.kube.manifests import Image, KubeRuntime, labels

API = "data.fluid.io/v1alpha1"
NS = "default"


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "spec": spec,
            "metadata": {"name": name, "namespace": NS, "uid": str(uuid.uuid4()), "resourceVersion": "1"}}


@pytest.fixture
def cluster():
    with EmulatedCluster() as emulated:
        emulated.start_operator(namespaces=(NS,))
        yield emulated


def status_of(kube: KubeClient, kind: str, name: str) -> dict[str, Any]:
    return (kube.get(Ref(API, kind, NS, name)) or {}).get("status") or {}


def exists(kube: KubeClient, api: str, kind: str, name: str, namespace: str | None = NS) -> bool:
    return kube.get(Ref(api, kind, namespace, name)) is not None


def play_kubelet(kube: KubeClient, kind: str, name: str, status: dict[str, Any]) -> None:
    kube.patch(Ref("apps/v1", kind, NS, name), {"status": status})


def add_node(cluster: EmulatedCluster, name: str) -> None:
    cluster.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {}}})


def add_worker_pod(cluster: EmulatedCluster, runtime: str, index: int, node: str) -> None:
    rt = KubeRuntime(name=runtime, namespace=NS, workers=1, size="1Gi",
                     worker_image=Image("x", "y"), master_image=Image("x", "y"), bridge_image=Image("x", "y"))
    cluster.create({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{runtime}-worker-{index}", "namespace": NS, "labels": labels(rt, "worker")},
        "spec": {"nodeName": node, "containers": [{"name": "vineyardd", "image": "x"}]},
    })


def node_labels(kube: KubeClient, name: str) -> dict[str, str]:
    return (kube.get(Ref("v1", "Node", None, name)) or {}).get("metadata", {}).get("labels") or {}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition of type ``kind`` in ``status`` ({} when it has none)."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def test_dataset_and_runtime_reach_bound_then_scale_and_delete(cluster):
    kube, wait = cluster.kube, cluster.wait_for
    for node in ("n1", "n2", "n3"):
        add_node(cluster, node)
    cluster.create(resource("Dataset", "demo", {}))
    cluster.create(resource("VineyardRuntime", "demo", {"replicas": 2}))

    wait(lambda: exists(kube, "apps/v1", "StatefulSet", "demo-master"), message="master created")
    # the reconcile that made the master has ended (its status says so) and made no workers
    wait(lambda: condition(status_of(kube, "VineyardRuntime", "demo"), "WorkersInitialized").get("reason")
         == "WaitingForMaster", message="the runtime waits for its master")
    assert not exists(kube, "apps/v1", "StatefulSet", "demo-worker"), "workers wait for the master"
    wait(lambda: status_of(kube, "Dataset", "demo").get("phase") == "NotBound", message="dataset NotBound")

    play_kubelet(kube, "StatefulSet", "demo-master", {"replicas": 1, "readyReplicas": 1})
    wait(lambda: exists(kube, "apps/v1", "StatefulSet", "demo-worker"), message="workers created")
    for api, kind, name, namespace in (("v1", "ConfigMap", "demo-rpc-conf", NS),
                                       ("networking.k8s.io/v1", "NetworkPolicy", "demo-vineyard", NS),
                                       ("apps/v1", "DaemonSet", "demo-fuse", NS),
                                       ("v1", "PersistentVolume", "default-demo", None),
                                       ("v1", "PersistentVolumeClaim", "demo", NS)):
        wait(lambda: exists(kube, api, kind, name, namespace), message=f"{kind}/{name} created")

    play_kubelet(kube, "StatefulSet", "demo-worker", {"replicas": 2, "readyReplicas": 2})
    play_kubelet(kube, "DaemonSet", "demo-fuse", {"desiredNumberScheduled": 2, "numberReady": 2})
    add_worker_pod(cluster, "demo", 0, "n1")
    add_worker_pod(cluster, "demo", 1, "n2")
    status = wait(lambda: (s := status_of(kube, "VineyardRuntime", "demo")).get("workerPhase") == "Ready"
                  and s.get("fusePhase") == "Ready" and s, message="runtime ready")
    assert status["masterPhase"] == "Ready"
    assert {c["type"]: c["status"] for c in status["conditions"]}["WorkersReady"] == "True"
    dataset = wait(lambda: (s := status_of(kube, "Dataset", "demo")).get("phase") == "Bound" and s,
                   message="dataset bound")
    assert dataset["runtimes"][0] == {"name": "demo", "namespace": NS, "category": "Accelerate", "type": "vineyard"}
    wait(lambda: node_labels(kube, "n1").get("fluid.io/s-default-demo") == "true", message="n1 labelled")
    wait(lambda: node_labels(kube, "n2").get("fluid.io/s-vineyard-default-demo") == "true", message="n2 labelled")
    assert "fluid.io/s-default-demo" not in node_labels(kube, "n3")

    # an object deleted behind the operator's back comes back (full apply every few seconds)
    kube.delete(Ref("v1", "ConfigMap", NS, "demo-rpc-conf"))
    wait(lambda: exists(kube, "v1", "ConfigMap", "demo-rpc-conf"), message="drift repaired")

    # scaling: the StatefulSet follows, readiness is partial until the kubelet catches up
    kube.patch(Ref(API, "VineyardRuntime", NS, "demo"), {"spec": {"replicas": 3}})
    wait(lambda: kube.get(Ref("apps/v1", "StatefulSet", NS, "demo-worker"))["spec"]["replicas"] == 3,
         message="scaled to 3")
    play_kubelet(kube, "StatefulSet", "demo-worker", {"replicas": 3, "readyReplicas": 2})
    wait(lambda: status_of(kube, "VineyardRuntime", "demo").get("workerPhase") == "PartialReady",
         message="partially ready")

    # replayed events (kmock replays every object on each watch reconnect) made no duplicates
    assert cluster.requests[("POST", f"/apis/apps/v1/namespaces/{NS}/statefulsets")] == 2

    # deletion removes every object and the node labels
    kube.delete(Ref(API, "VineyardRuntime", NS, "demo"))
    wait(lambda: not exists(kube, "apps/v1", "StatefulSet", "demo-worker"), message="workers deleted")
    for api, kind, name, namespace in (("apps/v1", "StatefulSet", "demo-master", NS),
                                       ("v1", "ConfigMap", "demo-rpc-conf", NS),
                                       ("v1", "PersistentVolume", "default-demo", None),
                                       ("apps/v1", "DaemonSet", "demo-fuse", NS)):
        wait(lambda: not exists(kube, api, kind, name, namespace), message=f"{kind}/{name} deleted")
    wait(lambda: "fluid.io/s-default-demo" not in node_labels(kube, "n1"), message="labels removed")


def test_invalid_runtime_gets_a_condition_and_nothing_is_created(cluster):
    kube = cluster.kube
    cluster.create(resource("Dataset", "bad", {}))
    cluster.create(resource("VineyardRuntime", "bad",
                            {"tieredstore": {"levels": [{"mediumtype": "MEM", "quota": "2Gx"}]}}))
    conditions = cluster.wait_for(lambda: status_of(kube, "VineyardRuntime", "bad").get("conditions"),
                                  message="condition written")
    ready = {c["type"]: c for c in conditions}["Ready"]
    assert ready["reason"] == "InvalidSpec" and "quota" in ready["message"] and "not a size" in ready["message"]
    # a later change, still invalid, is processed after the first (kopf handles an object's
    # events in order): once its condition is written, the first made nothing either
    kube.patch(Ref(API, "VineyardRuntime", NS, "bad"), {"spec": {"tieredstore": {"levels": [
        {"mediumtype": "MEM", "quota": "3Gy"}]}}})
    cluster.wait_for(lambda: "3Gy" in condition(status_of(kube, "VineyardRuntime", "bad"), "Ready").get("message", ""),
                     message="the second invalid spec reported")
    assert not exists(kube, "apps/v1", "StatefulSet", "bad-master")
    cluster.wait_for(lambda: any(e.get("reason") == "InvalidSpec" for e in kube.list(Ref("v1", "Event", NS))),
                     message="an InvalidSpec event")


def test_invalid_operation_fails_with_its_reason_and_runs_nothing(cluster):
    kube = cluster.kube
    cluster.create(resource("DataLoad", "bad-load", {"dataset": {"name": "nowhere"}, "policy": "Sometimes"}))
    status = cluster.wait_for(lambda: (s := status_of(kube, "DataLoad", "bad-load")).get("phase") and s,
                              message="phase written")
    assert status["phase"] == "Failed" and status["duration"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["reason"] == "InvalidSpec" and "spec.policy" in failed["message"]
    assert not exists(kube, "batch/v1", "Job", "bad-load-dataload")


def test_operator_webhook_places_pods_from_watched_nodes_and_a_real_etcd(make_cluster, tmp_path):
    """Nodes and runtimes come from watch events, object locations from the runtime's
    etcd (a real local cluster's, named as the runtime's external etcd)."""
    import base64
    import json
    import ssl
    import urllib.request

    import numpy as np

    import objects
    from fluid_core.operator import placement_feed
    from fluid_core.operator.certs import self_signed

    local = make_cluster(nodes=2, size="64Mi")
    with objects.connect(local.nodes[1].socket) as store:
        store.put(np.ones(2048), name="default/feed/features")
    cert, key = self_signed(["127.0.0.1"], tmp_path)
    placement_feed.configure_webhook(placement_feed.WebhookSettings(
        host="127.0.0.1", port=0, certfile=cert, keyfile=key, refresh_seconds=0.2))
    try:
        with EmulatedCluster() as emulated:
            emulated.start_operator(namespaces=(NS,))
            for node in local.nodes:
                emulated.create({"apiVersion": "v1", "kind": "Node",
                                 "metadata": {"name": node.name, "labels": dict(node.labels)}})
            emulated.create(resource("Dataset", "feed", {}))
            emulated.create(resource("VineyardRuntime", "feed",
                                     {"master": {"endpoint": {"uri": local.etcd_endpoint}}}))
            url = emulated.wait_for(placement_feed.webhook_url, message="webhook serving")
            review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                "uid": "1", "object": {"kind": "Pod", "metadata": {
                    "name": "p", "namespace": NS, "annotations": {"data.fluid.io/consumes": "features"}},
                    "spec": {"containers": [], "volumes": [{"name": "d", "persistentVolumeClaim": {
                        "claimName": "feed"}}]}}}}
            context = ssl.create_default_context(cafile=cert)

            def placed_on() -> list[str]:
                request = urllib.request.Request(url + "/mutate-pods", data=json.dumps(review).encode(),
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, context=context, timeout=10) as reply:
                    answer = json.loads(reply.read())["response"]
                patch = json.loads(base64.b64decode(answer.get("patch", "W10=")))
                text = json.dumps(patch)
                return [n.name for n in local.nodes if f'"values": ["{n.name}"]' in text]

            assert emulated.wait_for(placed_on, timeout=30, message="pod placed by object locality") == [
                local.nodes[1].name]
    finally:
        placement_feed.configure_webhook(None)


def bind(cluster: EmulatedCluster, name: str, runtime: dict[str, Any] | None = None,
         dataset: dict[str, Any] | None = None, phase: str = "Bound") -> None:
    """A Dataset + VineyardRuntime brought to ``phase`` (the test plays the kubelet)."""
    kube, wait = cluster.kube, cluster.wait_for
    cluster.create(resource("Dataset", name, dataset or {}))
    cluster.create(resource("VineyardRuntime", name, {"replicas": 1, **(runtime or {})}))
    if "master" not in (runtime or {}):  # an external etcd has no master of ours
        wait(lambda: exists(kube, "apps/v1", "StatefulSet", f"{name}-master"), message="master created")
        play_kubelet(kube, "StatefulSet", f"{name}-master", {"replicas": 1, "readyReplicas": 1})
    wait(lambda: exists(kube, "apps/v1", "StatefulSet", f"{name}-worker"), message="workers created")
    play_kubelet(kube, "StatefulSet", f"{name}-worker", {"replicas": 1, "readyReplicas": 1})
    play_kubelet(kube, "DaemonSet", f"{name}-fuse", {"desiredNumberScheduled": 1, "numberReady": 1})
    wait(lambda: status_of(kube, "Dataset", name).get("phase") == phase, message=f"dataset {phase}")


def job_ran(cluster: EmulatedCluster, job: str, node: str, succeeded: bool) -> None:
    """Play the kubelet for a Job: its pod ran on ``node`` and succeeded or failed for good."""
    cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": f"{job}-pod", "namespace": NS, "labels": {"job-name": job}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}})
    status = {"startTime": "2026-01-01T00:00:00Z"}
    status.update({"succeeded": 1, "completionTime": "2026-01-01T00:00:07Z"} if succeeded else {"failed": 3})
    cluster.kube.patch(Ref("batch/v1", "Job", NS, job), {"status": status})


def test_operations_run_as_jobs_in_flow_order_on_their_predecessors_node(cluster):
    import kubernetes_validate

    kube, wait = cluster.kube, cluster.wait_for
    bind(cluster, "flow")
    cluster.create(resource("DataLoad", "load", {"dataset": {"name": "flow"}, "target": [{"path": "/in/x.npy"}]}))
    cluster.create(resource("DataProcess", "step", {
        "dataset": {"name": "flow", "mountPath": "/mnt/flow"}, "processor": {"function": "mine:step"},
        "runAfter": {"kind": "DataLoad", "name": "load", "affinityStrategy": {"policy": "Require"}}}))
    cluster.create(resource("DataBackup", "last", {"dataset": {"name": "flow"}, "backupPath": "/out",
                                                   "runAfter": {"kind": "DataProcess", "name": "step"}}))

    load_job = wait(lambda: kube.get(Ref("batch/v1", "Job", NS, "load-dataload")), message="DataLoad's Job")
    container = load_job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["fluidv", "op", "run", "DataLoad", "load", "--namespace", NS]
    assert {"name": "VINEYARD_CONFIG", "value": "/data/vineyard-config.yaml"} in container["env"]
    assert load_job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "flow"
    wait(lambda: status_of(kube, "DataProcess", "step").get("waitingFor") == {"operationComplete": True},
         message="step waits for load")
    assert not exists(kube, "batch/v1", "Job", "step-dataprocess")

    job_ran(cluster, "load-dataload", "n2", succeeded=True)
    load = wait(lambda: (s := status_of(kube, "DataLoad", "load")).get("phase") == "Complete" and s, message="load done")
    assert load["node"] == "n2" and load["duration"] == "7s"
    step_job = wait(lambda: kube.get(Ref("batch/v1", "Job", NS, "step-dataprocess")), message="step's Job")
    pod = step_job["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "dataset", "mountPath": "/mnt/flow",
                                                     "mountPropagation": "HostToContainer"}]
    affinity = wait(lambda: status_of(kube, "DataProcess", "step").get("nodeAffinity"),
                    message="the step's status names its node affinity")  # patched after the Job is made
    assert affinity["requiredDuringSchedulingIgnoredDuringExecution"] == {"nodeSelectorTerms": terms}

    job_ran(cluster, "step-dataprocess", "n2", succeeded=False)
    wait(lambda: status_of(kube, "DataProcess", "step").get("phase") == "Failed", message="step failed")
    last = wait(lambda: (s := status_of(kube, "DataBackup", "last")).get("phase") == "Failed" and s,
                message="its successor failed")
    assert any(c["reason"] == "PredecessorFailed" for c in last["conditions"])
    assert not exists(kube, "batch/v1", "Job", "last-databackup")
    for job in (load_job, step_job):
        for version in ("1.30.0", "1.37.0"):
            kubernetes_validate.validate({k: v for k, v in job.items() if k != "status"}, version, strict=False)


def test_the_sdk_runs_the_same_flow_on_kubernetes(cluster):
    from fluid_core.sdk import Dataset

    bind(cluster, "sdkflow")
    flow = (Dataset("sdkflow", namespace=NS, backend=cluster.kube)
            .preload("/in/raw.parquet", name="load")
            .process("mine:features", inputs=["raw"], name="features"))
    handle = flow.run("r1")
    wait = cluster.wait_for
    wait(lambda: exists(cluster.kube, "batch/v1", "Job", "load-dataload"), message="first step's Job")
    steps = cluster.kube.get(Ref(API, "DataProcess", NS, "features"))["spec"]
    assert steps["runAfter"] == {"kind": "DataLoad", "name": "load", "affinityStrategy": {"policy": "Require"}}
    job_ran(cluster, "load-dataload", "n1", succeeded=True)
    wait(lambda: exists(cluster.kube, "batch/v1", "Job", "features-dataprocess"), message="second Job")
    job_ran(cluster, "features-dataprocess", "n1", succeeded=True)
    final = handle.wait(timeout=30, poll=0.1)
    assert [(s["name"], s["phase"], s["node"]) for s in final] == [("load", "Complete", "n1"),
                                                                    ("features", "Complete", "n1")]


class DirectoryReads:
    """The operator's reads of a dataset's object directory, seen by a listener of its
    own placed after the operator's (a refresh calls them in turn with the same names):
    once this one has seen a read, the OnEvent triggers have judged it."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        #: (when, object names) of each read, in order
        self.seen: list[tuple[float, frozenset[str]]] = []

    def __call__(self, dataset: str, ids: dict[str, str]) -> None:
        if dataset == self.dataset:
            self.seen.append((time.monotonic(), frozenset(ids)))

    def after(self, moment: float, count: int = 2) -> bool:
        """Whether ``count`` reads began after ``moment`` (the first of two may have
        been judged just before it; the second began after the first ended)."""
        return sum(1 for at, _ in self.seen if at > moment) >= count

    def first_with(self, name: str) -> float | None:
        return next((at for at, names in self.seen if name in names), None)


def test_on_event_runs_a_job_each_time_its_objects_change(make_cluster):
    """The operator reads the runtime's object directory (a real local cluster's etcd,
    named as the runtime's external etcd): a put under the pattern makes a Job, each
    run a Job of its own, a put elsewhere none; the Dataset's cacheStates count the
    objects' bytes."""
    import numpy as np

    import objects
    from fluid_core.operator import placement_feed
    from vineyard_runtime.quantity import human_bytes

    local = make_cluster(nodes=1, size="64Mi")
    before = placement_feed.REFRESH_SECONDS
    placement_feed.REFRESH_SECONDS = 0.2
    reads = DirectoryReads("default/events")
    placement_feed.NAMES_LISTENERS.append(reads)
    debounce = 1.0  # onEvent's default
    try:
        with EmulatedCluster() as emulated, objects.connect(local.nodes[0].socket) as store:
            emulated.start_operator(namespaces=(NS,))
            kube, wait = emulated.kube, emulated.wait_for
            bind(emulated, "events", {"master": {"endpoint": {"uri": local.etcd_endpoint}}})
            emulated.create(resource("DataProcess", "react", {
                "dataset": {"name": "events"}, "processor": {"function": "mine:react"}, "policy": "OnEvent",
                "onEvent": {"objectPattern": "raw/*"}}))
            wait(lambda: status_of(kube, "DataProcess", "react").get("phase") == "Pending", message="waits")
            waiting = time.monotonic()
            wait(lambda: reads.after(waiting, 3), message="the baseline read, and one more")
            assert not exists(kube, "batch/v1", "Job", "react-dataprocess-1"), "nothing changed, nothing fires"

            store.put(np.ones(1024), name="default/events/other")  # not matching: fires nothing
            seen = wait(lambda: reads.first_with("default/events/other"), message="the operator read the put")
            wait(lambda: reads.after(seen + debounce), message="reads past the debounce after it")
            assert not exists(kube, "batch/v1", "Job", "react-dataprocess-1"), "a put outside raw/ fired"

            store.put(np.ones(1024), name="default/events/raw/a")
            wait(lambda: exists(kube, "batch/v1", "Job", "react-dataprocess-1"), timeout=30, message="first run")
            wait(lambda: (status_of(kube, "DataProcess", "react").get("infos") or {}).get("runs") == "1",
                 message="the status counts the run")  # patched after the Job is made
            job_ran(emulated, "react-dataprocess-1", "n1", succeeded=True)
            wait(lambda: status_of(kube, "DataProcess", "react").get("phase") == "Complete", message="run done")
            done = time.monotonic()
            wait(lambda: reads.after(done), message="a read of the idle operation (its new baseline)")
            store.put(np.zeros(1024), name="default/events/raw/a", replace=True)
            wait(lambda: exists(kube, "batch/v1", "Job", "react-dataprocess-2"), timeout=30, message="second run")
            held = human_bytes(sum(r.nbytes for r in store.list("default/events/")))
            cache = wait(lambda: (c := status_of(kube, "Dataset", "events").get("cacheStates", {})).get("cached")
                         == held and c, timeout=30, message=f"cached bytes reported: {held}")
            assert held != human_bytes(0) and cache["cachedPercentage"].endswith("%")
    finally:
        placement_feed.NAMES_LISTENERS.remove(reads)
        placement_feed.REFRESH_SECONDS = before


def test_a_dataset_with_a_restore_location_binds_once_its_restore_job_succeeded(cluster):
    import kubernetes_validate

    kube, wait = cluster.kube, cluster.wait_for
    for name, outcome in (("restored", True), ("broken", False)):
        bind(cluster, name, dataset={"dataRestoreLocation": {"path": "pvc://backups/team/"}}, phase="NotBound")
        job = wait(lambda: kube.get(Ref("batch/v1", "Job", NS, f"{name}-restore")), message="restore Job")
        kubernetes_validate.validate({k: v for k, v in job.items() if k != "status"}, "1.33.0", strict=True)
        pod = job["spec"]["template"]["spec"]
        assert pod["containers"][0]["command"] == [
            "fluidv", "op", "restore", name, "--namespace", NS, "--path", "/fluid-backup/team"]
        assert {"name": "fluid-backup", "persistentVolumeClaim": {"claimName": "backups"}} in pod["volumes"]
        wait(lambda: next(c for c in status_of(kube, "Dataset", name)["conditions"] if c["type"] == "Ready")
             ["reason"] == "Restoring", message="the Dataset says it is restoring")  # its status follows the Job
        job_ran(cluster, f"{name}-restore", "n1", succeeded=outcome)
        done = wait(lambda: (s := status_of(kube, "Dataset", name)).get("phase") in ("Bound", "Failed") and s,
                    message="restore ended")
        if outcome:
            assert done["phase"] == "Bound"
            assert any(c["type"] == "Restored" and c["status"] == "True" for c in done["conditions"])
        else:
            assert done["phase"] == "Failed"
            assert "restoring pvc://backups/team/ failed 3 times" in next(
                c["message"] for c in done["conditions"] if c["type"] == "Ready")


def test_a_workload_status_older_than_its_spec_is_not_ready():
    """A StatefulSet's first status ({replicas: 0}, written before the controller saw the
    spec) once made a runtime Ready with no pods: desired is the spec's, and a status
    behind the generation counts nothing ready."""
    fresh = {"metadata": {"generation": 1}, "spec": {"replicas": 2}, "status": {"replicas": 0}}
    assert runtimes._workload(fresh, "replicas", "readyReplicas", "currentReplicas").ready == 0
    assert runtimes._workload(fresh, "replicas", "readyReplicas", "currentReplicas").desired == 2
    seen = {"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "readyReplicas": 2}}
    assert runtimes._workload(seen, "replicas", "readyReplicas", "currentReplicas") == runtimes.Workload(2, 2, 0)
    behind = {**seen, "metadata": {"generation": 3}}
    assert runtimes._workload(behind, "replicas", "readyReplicas", "currentReplicas").ready == 0
    daemons = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "desiredNumberScheduled": 0}}
    assert runtimes._workload(daemons, "desiredNumberScheduled", "numberReady", "currentNumberScheduled").desired == 0


def test_workers_that_started_before_the_master_are_stale():
    """A worker registered with a master that is gone when its vineyardd (its container's
    last start) began before the master's pod did; a master container restarting in its
    pod (its data kept) makes none stale; a worker being deleted or not running is not."""
    def worker(name: str, started: str | None, deleting: bool = False) -> dict[str, Any]:
        state = {"running": {"startedAt": started}} if started else {"waiting": {"reason": "ContainerCreating"}}
        meta: dict[str, Any] = {"name": name, **({"deletionTimestamp": "2026-12-07T10:00:09Z"} if deleting else {})}
        return {"metadata": meta, "status": {"containerStatuses": [{"state": state}]}}

    master = {"status": {"startTime": "2026-12-07T10:00:05Z",
                         "containerStatuses": [{"state": {"running": {"startedAt": "2026-12-07T10:30:00Z"}}}]}}
    pods = [worker("w-10", "2026-12-07T09:00:00Z"), worker("w-2", "2026-12-07T09:00:00Z"),
            worker("w-1", "2026-12-07T10:00:06Z"), worker("w-3", None), worker("w-4", "2026-12-07T09:00:00Z", True)]
    assert runtimes.stale_workers(pods, master) == ("w-2", "w-10")
    assert runtimes.stale_workers(pods, None) == ()
