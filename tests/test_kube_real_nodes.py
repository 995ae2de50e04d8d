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
from control_plane import binaries, project_crds

from fluid_core.operator.kube import KubeClient, Ref
from support.realcluster import RealCluster

pytestmark = pytest.mark.timeout(1800)

CHART = str(Path(__file__).resolve().parent.parent / "charts" / "fluid-vineyard")
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

    done = cluster.control_plane.wait_for(ended, timeout=timeout, message=lambda: f"pod {name} ended: {describe(kube)}")
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
         message=lambda: f"the dataset Bound: {describe(kube)}")
    # every node's bridge links a serving worker: clients on any node connect by IPC
    wait(lambda: status_of(kube, "VineyardRuntime", DATASET).get("fusePhase") == "Ready", timeout=120,
         message=lambda: f"the bridges ready: {describe(kube)}")
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
