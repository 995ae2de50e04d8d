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

import numpy as np
import pytest
from control_plane import project_crds

from fluid_core.kube import KubeClient, Ref
from support import realkube
from support.realcluster import RealCluster
from support.realkube import install_chart, pods, ready, tool

pytestmark = pytest.mark.timeout(1800)

RELEASE, SYSTEM, NS, DATASET = "fv", "fluid-system", "team", "shared"
API = "data.fluid.io/v1alpha1"
FRAME_ROWS = 1 << 24  # two float64 columns: 256 MiB
#: the image's user: pods and operations run as it, so the folders they write are made its own
IMAGE_USER = 65532


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with RealCluster(tmp_path_factory.mktemp("real"), nodes=2, crds=project_crds()) as real:
        print(f"real cluster up: {', '.join(f'{k} {v:.1f} s' for k, v in real.timings.items())}")
        yield real


@pytest.fixture(scope="module")
def kube(cluster: RealCluster) -> KubeClient:
    """The chart, installed by helm, its operator running in-cluster from the project image."""
    client = install_chart(cluster, RELEASE, SYSTEM, "webhook.failurePolicy=Fail")
    client.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    return client


def status_of(kube: KubeClient, kind: str, name: str) -> dict[str, Any]:
    return realkube.status_of(kube, NS, kind, name)


def describe(kube: KubeClient, namespace: str = NS) -> str:
    return realkube.describe(kube, namespace)


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

    done = cluster.control_plane.wait_for(ended, timeout=timeout, message=lambda: f"pod {name} ended: {describe(kube)}")
    logs = tool(cluster, "kubectl", "logs", "-n", NS, name).stdout
    if done["status"]["phase"] != "Succeeded":
        node_logs = [tool(cluster, "kubectl", "logs", "-n", NS, p["metadata"]["name"], "--tail=40", check=False).stdout
                     for p in pods(kube, NS) if p["spec"].get("nodeName") == done["spec"]["nodeName"]
                     and p["metadata"]["name"] != name]
        raise AssertionError(f"{name} failed: {logs[-3000:]}\n{describe(kube)}\n" + "\n".join(node_logs))
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
         message=lambda: f"the dataset Bound: {describe(kube)}")
    # the workers start one after another and are ready once they joined the cluster;
    # every node's bridge then links its worker: clients on any node connect by IPC
    def serving() -> bool:
        status = status_of(kube, "VineyardRuntime", DATASET)
        by_role = {role: pods(kube, NS, f"app.kubernetes.io/component={role}") for role in ("master", "worker", "fuse")}
        return (all(status.get(f"{part}Phase") == "Ready" for part in ("master", "worker", "fuse"))
                and len(by_role["master"]) == 1 and all(ready(p) for found in by_role.values() for p in found)
                and all(sorted(p["spec"]["nodeName"] for p in by_role[role]) == cluster.node_names
                        for role in ("worker", "fuse")))

    wait(serving, timeout=300, message=lambda: f"a worker and a bridge serving on each node: {describe(kube)}")
    listed = tool(cluster, "kubectl", "get", "datasets,vineyardruntimes", "-n", NS).stdout
    assert "Bound" in listed and listed.count("Ready") == 3, listed


PRODUCE = f"""
    import numpy as np, pandas as pd, objects
    store = objects.connect()  # through the dataset's vineyard-config.yaml ($VINEYARD_CONFIG)
    assert store.target.kind == "ipc", store.target.describe()
    frame = pd.DataFrame({{"a": np.arange({FRAME_ROWS}, dtype=np.float64), "b": np.ones({FRAME_ROWS})}})
    store.put(frame, "{NS}/{DATASET}/frame")
    store.put(np.arange(1 << 20, dtype=np.int64).reshape(1024, 1024), "{NS}/{DATASET}/tensor")  # 8 MiB
    print("put on", store.node)
"""
CONSUME = f"""
    import numpy as np, objects
    store = objects.connect()
    frame, tensor = store.get("{NS}/{DATASET}/frame"), store.get("{NS}/{DATASET}/tensor")
    assert frame.shape == ({FRAME_ROWS}, 2) and frame["a"].to_numpy()[-1] == {FRAME_ROWS - 1}
    assert float(frame["a"].sum()) == float(np.arange({FRAME_ROWS}, dtype=np.float64).sum())
    assert float(frame["b"].sum()) == {FRAME_ROWS} and tensor.shape == (1024, 1024)
    assert int(tensor.sum()) == (1 << 20) * ((1 << 20) - 1) // 2
    print("read on", store.node, "from", store.info("{NS}/{DATASET}/frame").node, "by", dict(store.remote.paths))
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
    # straight from the producer node's blob server (in its bridge) into the reader's node
    assert f"read on {other} from {producer_node} by {{'blob server': 2}}" in logs, logs


READ_FILES = f"""
    import numpy as np, os, pyarrow.parquet as pq
    listed = sorted(os.listdir("/data/objects"))
    frame = pq.read_table("/data/objects/frame.parquet")
    tensor = np.load("/data/objects/tensor.npy")
    assert frame.num_rows == {FRAME_ROWS} and frame.column("a")[-1].as_py() == {FRAME_ROWS - 1}
    assert tensor.shape == (1024, 1024) and int(tensor.sum()) == (1 << 20) * ((1 << 20) - 1) // 2
    print("files", listed, "as uid", os.getuid())
"""


def test_a_pod_reads_the_datasets_objects_as_files(cluster: RealCluster, kube: KubeClient) -> None:
    """The FUSE view: each node's bridge mounts the dataset's objects as files in the
    dataset's folder; a pod of an ordinary user that mounts the dataset reads them."""
    kube.patch(Ref(API, "VineyardRuntime", NS, DATASET), {"spec": {"fuse": {"options": {"view": "true"}}}})

    def viewing() -> bool:
        bridges = pods(kube, NS, "app.kubernetes.io/component=fuse")
        return len(bridges) == 2 and all(ready(p) and "--view" in p["spec"]["containers"][0]["command"]
                                         for p in bridges)

    cluster.control_plane.wait_for(viewing, timeout=300, message=lambda: f"the bridges mounting: {describe(kube)}")
    for node in cluster.node_names:
        _, logs = run_pod(cluster, kube, f"files-{node}", READ_FILES, node=node)
        assert "frame.parquet" in logs and "tensor.npy" in logs and f"as uid {IMAGE_USER}" in logs, logs


FLOW = "flow"
ROWS = 20_000
EVALUATE = f"""
import numpy as np, objects
store = objects.connect()
x, y = store.get("{NS}/{FLOW}/features"), store.get("{NS}/{FLOW}/labels")
model = store.get("{NS}/{FLOW}/model")
accuracy = float((((x @ model["weights"] + model["bias"]) > 0) == (y > 0.5)).mean())
store.put(np.array([accuracy]), "{NS}/{FLOW}/accuracy")
print("accuracy", accuracy, "on", store.node)
"""


def node_folders(cluster: RealCluster, *names: str) -> None:
    """``/mnt/<name>`` on every node, writable by the operations' user (as an administrator
    prepares the host folders that operations write to)."""
    assert cluster.real is not None
    for node in cluster.real.nodes:
        for name in names:
            folder = node.own("/mnt") / name
            folder.mkdir(parents=True, exist_ok=True)
            os.chown(folder, IMAGE_USER, IMAGE_USER)


def flow_inputs(cluster: RealCluster) -> tuple[np.ndarray, np.ndarray]:
    """features.npy and labels.npy in every node's /mnt/flow-in (the dataset's mount)."""
    node_folders(cluster, "flow-out", "flow-backup", "sdk-out")
    rng = np.random.default_rng(7)
    features = rng.standard_normal((ROWS, 4)).astype(np.float32)
    labels = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(np.float32)
    assert cluster.real is not None
    for node in cluster.real.nodes:
        folder = node.own("/mnt") / "flow-in"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "features.npy", features)
        np.save(folder / "labels.npy", labels)
    return features, labels


def operation(kind: str, name: str, spec: dict[str, Any], after: str | None = None) -> dict[str, Any]:
    if after is not None:  # on the node the step before ran on
        kind_after, name_after = after.split("/")
        spec = {**spec, "runAfter": {"kind": kind_after, "name": name_after,
                                     "affinityStrategy": {"policy": "Require"}}}
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec}


def test_a_flow_runs_as_jobs_of_the_image_each_on_its_predecessors_node(cluster: RealCluster,
                                                                         kube: KubeClient) -> None:
    features, labels = flow_inputs(cluster)
    repository, tag = cluster.images["project"].rsplit(":", 1)
    dataset = {"name": FLOW, "namespace": NS}
    steps = [
        operation("Dataset", FLOW, {"mounts": [{"name": "in", "mountPoint": "local:///mnt/flow-in"}]}),
        operation("VineyardRuntime", FLOW, {"replicas": 2, "tieredstore": {"levels": [
            {"mediumtype": "MEM", "quota": "512Mi"}]}}),
        operation("DataLoad", "load", {"dataset": dataset}),
        operation("DataProcess", "train", {"dataset": dataset, "processor": {
            "function": "fluid_core.demo.pipeline:train", "params": {"epochs": "20"}}}, after="DataLoad/load"),
        operation("DataProcess", "evaluate", {"dataset": {**dataset, "mountPath": "/data"}, "processor": {
            "script": {"image": repository, "imageTag": tag, "command": ["python3"], "source": EVALUATE}}},
            after="DataProcess/train"),
        operation("DataMigrate", "export", {"from": {"dataset": dataset}, "to": {
            "externalStorage": {"uri": "local:///mnt/flow-out"}}}, after="DataProcess/evaluate"),
        operation("DataBackup", "keep", {"dataset": FLOW, "backupPath": "local:///mnt/flow-backup"},
                  after="DataMigrate/export"),
    ]
    for step in steps:
        plural = {"DataProcess": "dataprocesses"}.get(step["kind"], step["kind"].lower() + "s")
        kube.request("POST", f"/apis/{API}/namespaces/{NS}/{plural}", step)
    names = [(s["kind"], s["metadata"]["name"]) for s in steps[2:]]

    def ended() -> bool:
        phases = [status_of(kube, kind, name).get("phase") for kind, name in names]
        failed = {name: [c.get("message") for c in status_of(kube, kind, name).get("conditions") or []]
                  for (kind, name), phase in zip(names, phases) if phase == "Failed"}
        if failed:
            pytest.fail("\n".join(f"{name}: {' | '.join(m for m in messages if m)}" for name, messages in failed.items()),
                        pytrace=False)
        return phases == ["Complete"] * len(names)

    cluster.control_plane.wait_for(ended, timeout=900, message=lambda: f"the flow Complete: {describe(kube)}")
    nodes = [status_of(kube, kind, name)["node"] for kind, name in names]
    assert len(set(nodes)) == 1 and nodes[0] in cluster.node_names, nodes  # each on its predecessor's
    jobs = [p for p in pods(kube, NS) if "job-name" in p["metadata"].get("labels", {})]
    assert len(jobs) == len(names) and all(
        p["spec"]["containers"][0]["image"] == cluster.images["project"] for p in jobs)

    assert cluster.real is not None
    node = next(n for n in cluster.real.nodes if n.name == nodes[0])
    out = node.own("/mnt") / "flow-out"
    assert np.array_equal(np.load(out / "features.npy"), features)
    assert np.array_equal(np.load(out / "labels.npy"), labels)
    accuracy = float(np.load(out / "accuracy.npy")[0])
    assert accuracy > 0.9, accuracy  # the model trained in the step before learned the rule
    weights = np.load(out / "model" / "00000.npy")  # a dict is a folder of its values, in order
    assert weights.shape == (4,) and weights[0] > weights[2]
    manifest = json.loads((node.own("/mnt") / "flow-backup" / "fluidv-backup.json").read_text())
    assert {"features", "labels", "model", "accuracy"} <= {e["key"] for e in manifest["objects"]}, manifest

    # a folder its user may not write: the operation fails, saying so in one line
    denied = operation("DataMigrate", "export-denied", {"from": {"dataset": dataset}, "to": {
        "externalStorage": {"uri": "local:///mnt/flow-denied"}}})
    kube.request("POST", f"/apis/{API}/namespaces/{NS}/datamigrates", denied)
    cluster.control_plane.wait_for(lambda: status_of(kube, "DataMigrate", "export-denied").get("phase") == "Failed",
                                   timeout=300, message="the denied export Failed")
    message = " ".join(c.get("message", "") for c in status_of(kube, "DataMigrate", "export-denied")["conditions"])
    assert "Permission denied" in message and f"runs as uid {IMAGE_USER}" in message, message
    assert "Traceback" not in message


def test_fluid_pysdk_flow_runs_as_jobs(cluster: RealCluster, kube: KubeClient) -> None:
    """Fluid's own SDK, in its venv, as its documentation uses it: bind, preload, a script
    step in the project image, a migration out; every step a Job that ran."""
    sdk = Path(__file__).resolve().parent.parent / ".venv-fluid-pysdk" / "bin" / "python"
    flows = Path(__file__).resolve().parent / "fluid_pysdk_flows.py"
    assert sdk.exists(), f"no fluid-pysdk venv at {sdk}: `make test` creates it"
    done = subprocess.run([str(sdk), str(flows), str(cluster.control_plane.kubeconfig), cluster.images["project"],
                           "local:///mnt/sdk-out", "ls /data > /dev/null && echo step-ran", "600"],
                          capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PYTHONPATH": "", "KUBECONFIG": str(cluster.control_plane.kubeconfig)})
    assert done.returncode == 0, done.stderr[-3000:] + describe(kube, "default")
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["bound"] == "Bound" and seen["phases"] == ["Complete"] * 3, seen
    logs = tool(cluster, "kubectl", "logs", "-n", "default", "job/sdkflow-step2-dataprocess").stdout
    assert "step-ran" in logs


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_readmes_walkthrough_runs_the_demo_pipeline_as_jobs(cluster: RealCluster, kube: KubeClient) -> None:
    """The "On a real cluster" steps of docs/kubernetes.md after `helm install`: the example runtime,
    then the example flow; the demo's four stages run as Jobs, each on the node of the
    one before, handing over through the cache."""
    for example in ("pipeline-runtime.yaml", "pipeline-flow.yaml"):
        tool(cluster, "kubectl", "apply", "-f", str(EXAMPLES / example))
    stages = ["generate", "features", "train", "evaluate"]

    def ended() -> bool:
        phases = [realkube.status_of(kube, "default", "DataProcess", stage).get("phase") for stage in stages]
        assert "Failed" not in phases, f"{dict(zip(stages, phases))}: {describe(kube, 'default')}"
        return phases == ["Complete"] * len(stages)

    cluster.control_plane.wait_for(ended, timeout=600, message=lambda: f"the pipeline Complete: {describe(kube, 'default')}")
    nodes = {realkube.status_of(kube, "default", "DataProcess", stage)["node"] for stage in stages}
    assert len(nodes) == 1 and nodes <= set(cluster.node_names), nodes
    listed = tool(cluster, "kubectl", "get", "dataprocesses", *stages).stdout
    assert listed.count("Complete") == len(stages), listed


# -- faults: the operator's pod, a worker, the etcd master, a whole node ------------------------

def exec_python(cluster: RealCluster, pod: str, code: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return realkube.exec_python(cluster, NS, pod, code, check=check)


def start_sleeper(cluster: RealCluster, kube: KubeClient, name: str, node: str) -> None:
    realkube.start_sleeper(cluster, kube, NS, name, node, DATASET)


def runtime_pods(kube: KubeClient, role: str) -> list[dict[str, Any]]:
    return pods(kube, NS, f"app.kubernetes.io/instance={DATASET},app.kubernetes.io/component={role}")


def runtime_ready(kube: KubeClient) -> bool:
    status = status_of(kube, "VineyardRuntime", DATASET)
    return all(status.get(part) == "Ready" for part in ("masterPhase", "workerPhase", "fusePhase"))


def test_the_operators_pod_deleted_mid_operation_converges_once(cluster: RealCluster, kube: KubeClient) -> None:
    """The operator's pod is deleted just after an operation is created: its Deployment's
    next pod takes the operation over and runs it to the end, in one Job."""
    repository, tag = cluster.images["project"].rsplit(":", 1)
    (old,) = pods(kube, SYSTEM, "app.kubernetes.io/component=operator")
    step = operation("DataProcess", "after-restart", {
        "dataset": {"name": DATASET, "namespace": NS, "mountPath": "/data"},
        "processor": {"script": {"image": repository, "imageTag": tag, "command": ["bash"],
                                 "source": "ls /data > /dev/null && echo converged"}}})
    kube.request("POST", f"/apis/{API}/namespaces/{NS}/dataprocesses", step)
    kube.delete(Ref("v1", "Pod", SYSTEM, old["metadata"]["name"]))
    wait = cluster.control_plane.wait_for
    wait(lambda: status_of(kube, "DataProcess", "after-restart").get("phase") in ("Complete", "Failed"), timeout=300,
         message=lambda: f"the operation ended: {describe(kube)} {describe(kube, SYSTEM)}")
    assert status_of(kube, "DataProcess", "after-restart")["phase"] == "Complete"
    (new,) = [p for p in pods(kube, SYSTEM, "app.kubernetes.io/component=operator")
              if not p["metadata"].get("deletionTimestamp")]
    assert new["metadata"]["uid"] != old["metadata"]["uid"] and ready(new)
    runs = [p for p in pods(kube, NS) if p["metadata"].get("labels", {}).get("job-name", "").startswith("after-restart")]
    assert len(runs) == 1, [p["metadata"]["name"] for p in runs]
    assert "converged" in tool(cluster, "kubectl", "logs", "-n", NS, runs[0]["metadata"]["name"]).stdout


PUT_AND_READ = """
    import numpy as np, objects
    store = objects.connect()
    store.put(np.full(1 << 20, {value}, dtype=np.int64), "{name}", replace=True)  # 8 MiB: blobs, not inline
    assert int(store.get("{name}")[-1]) == {value}
    print("put on", store.node)
"""


def test_a_killed_worker_comes_back_and_serves_its_node(cluster: RealCluster, kube: KubeClient) -> None:
    """vineyardd is killed in one node's worker pod: the kubelet starts it again, the
    node's bridge links the new socket, and the node's pods put and read again; what the
    dead process held is reported lost, naming its node, to a reader elsewhere."""
    assert cluster.real is not None
    victim, other = cluster.node_names
    start_sleeper(cluster, kube, f"sleeper-{victim}", victim)
    start_sleeper(cluster, kube, f"sleeper-{other}", other)
    exec_python(cluster, f"sleeper-{victim}", PUT_AND_READ.format(value=1, name=f"{NS}/{DATASET}/held"))
    (worker,) = [p for p in runtime_pods(kube, "worker") if p["spec"]["nodeName"] == victim]
    (status,) = worker["status"]["containerStatuses"]
    assert cluster.real.kill_container(0, status["containerID"]) >= 1

    def restarted() -> bool:
        now = next(p for p in runtime_pods(kube, "worker") if p["spec"]["nodeName"] == victim)
        return now["status"]["containerStatuses"][0]["restartCount"] > status["restartCount"] and ready(now)

    cluster.control_plane.wait_for(restarted, timeout=300, message=lambda: f"the worker restarted: {describe(kube)}")
    lost = exec_python(cluster, f"sleeper-{other}", f"""
        import objects
        try:
            objects.connect().get("{NS}/{DATASET}/held")
        except objects.ObjectNotFound as exc:
            print("lost:", exc)
    """)
    assert "lost:" in lost.stdout and victim in lost.stdout, f"{lost.stdout}{lost.stderr}{describe(kube)}"

    def serves() -> bool:  # the bridge relinks within a second of the new socket answering
        done = exec_python(cluster, f"sleeper-{victim}", PUT_AND_READ.format(value=2, name=f"{NS}/{DATASET}/held"),
                           check=False)
        return done.returncode == 0

    cluster.control_plane.wait_for(serves, timeout=120, message="the restarted worker serves its node")
    read = exec_python(cluster, f"sleeper-{other}", f"""
        import objects
        print("read", int(objects.connect().get("{NS}/{DATASET}/held")[-1]))
    """)
    assert "read 2" in read.stdout


def test_a_replaced_etcd_master_restarts_the_workers(cluster: RealCluster, kube: KubeClient) -> None:
    """The etcd master's pod is deleted: its StatefulSet starts a new one (an emptyDir: no
    data), the operator sees a new master and restarts the workers so that they register
    with it (one at a time), and objects cross between nodes again."""
    (master,) = runtime_pods(kube, "master")
    assert status_of(kube, "VineyardRuntime", DATASET).get("masterPodUID") == master["metadata"]["uid"]
    kube.delete(Ref("v1", "Pod", NS, master["metadata"]["name"]))

    def started(pod: dict[str, Any]) -> str:
        """When the worker's vineyardd last started ("" while it does not run)."""
        (container,) = (pod.get("status") or {}).get("containerStatuses") or [{}]
        return str(((container.get("state") or {}).get("running") or {}).get("startedAt") or "")

    def settled() -> bool:
        """A new master runs, and every worker's vineyardd started after it (its pod
        replaced by the operator, or its container restarted), joined and ready."""
        masters, now = runtime_pods(kube, "master"), runtime_pods(kube, "worker")
        new = [m for m in masters if m["metadata"]["uid"] != master["metadata"]["uid"]]
        began = str((new[0].get("status") or {}).get("startTime") or "") if len(new) == 1 else ""
        return (bool(began) and status_of(kube, "VineyardRuntime", DATASET).get("masterPodUID") == new[0]["metadata"]["uid"]
                and len(now) == 2 and all(started(p) >= began and ready(p) for p in now) and runtime_ready(kube))

    cluster.control_plane.wait_for(settled, timeout=300, message=lambda: f"the workers restarted: {describe(kube)}")
    print("settled:", describe(kube))
    events = kube.request("GET", f"/api/v1/namespaces/{NS}/events?fieldSelector=reason=MasterReplaced") or {}
    assert any("start again" in e.get("message", "") for e in events.get("items", [])), events
    first, second = cluster.node_names
    for node in (first, second):  # each node serves its pods again: its bridge linked the new worker
        if kube.get(Ref("v1", "Pod", NS, f"sleeper-{node}")) is None:
            start_sleeper(cluster, kube, f"sleeper-{node}", node)
        cluster.control_plane.wait_for(
            lambda: exec_python(cluster, f"sleeper-{node}", PUT_AND_READ.format(
                value=5, name=f"{NS}/{DATASET}/after-master"), check=False).returncode == 0,
            timeout=120, message=lambda: f"{node} serves its pods again: {describe(kube)}")
    run_pod(cluster, kube, "producer-after-master", PRODUCE, node=first)
    _, logs = run_pod(cluster, kube, "consumer-after-master", CONSUME, node=second)
    assert f"read on {second} from {first} by {{'blob server': 2}}" in logs, logs


def test_a_dead_node_is_named_to_readers_at_once(cluster: RealCluster, kube: KubeClient) -> None:
    """A node dies (kubelet, containerd and every pod killed at once): a reader on another
    node asking for an object the dead node held is told at once, by name, that the node
    does not answer. (Last: the cluster keeps one node.)"""
    assert cluster.real is not None
    (master,) = runtime_pods(kube, "master")
    survivor = master["spec"]["nodeName"]  # the directory (etcd) must outlive the node
    index = next(i for i, name in enumerate(cluster.node_names) if name != survivor)
    victim = cluster.node_names[index]
    for name, node in ((f"sleeper-{victim}", victim), (f"sleeper-{survivor}", survivor)):
        if kube.get(Ref("v1", "Pod", NS, name)) is None:
            start_sleeper(cluster, kube, name, node)
    exec_python(cluster, f"sleeper-{victim}", PUT_AND_READ.format(value=3, name=f"{NS}/{DATASET}/on-victim"))
    cluster.real.kill_node(index)
    read = exec_python(cluster, f"sleeper-{survivor}", f"""
        import time, objects
        store = objects.connect()
        began = time.monotonic()
        try:
            store.get("{NS}/{DATASET}/on-victim")
        except objects.ObjectNotFound as exc:
            print(f"refused after {{time.monotonic() - began:.3f}} s:", exc)
    """)
    assert "refused after" in read.stdout and f"node {victim}" in read.stdout, read.stdout + read.stderr
    print(read.stdout.strip())
    # the rest of the cluster goes on: the survivor's pods put and read
    exec_python(cluster, f"sleeper-{survivor}", PUT_AND_READ.format(value=4, name=f"{NS}/{DATASET}/after-death"))
