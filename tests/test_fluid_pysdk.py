"""Fluid's SDK driving the operator: the real fluid-pysdk (in its own venv, ``make test``
makes it), and this project's ``fluid_core.fluid`` with a Kubernetes backend,
on the emulated API server; this test plays the kubelet for workloads and Jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest
import yaml

from fluid_core.operator.kube import Ref
from fluid_core.operator.testing import EmulatedCluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SDK_PYTHON = os.environ.get("FLUIDV_PYSDK_PYTHON", os.path.join(ROOT, ".venv-fluid-pysdk", "bin", "python"))
FLOWS = os.path.join(os.path.dirname(__file__), "fluid_pysdk_flows.py")


def play_kubelet(cluster: EmulatedCluster, stop: threading.Event) -> None:
    """Every workload becomes ready and every Job succeeds on node ``n1``, as a kubelet would report."""
    kube = cluster.kube
    while not stop.wait(0.2):
        try:
            for item in kube.list(Ref("apps/v1", "StatefulSet", "default")):
                want = int((item.get("spec") or {}).get("replicas") or 1)
                if (item.get("status") or {}).get("readyReplicas") != want:
                    kube.patch(Ref("apps/v1", "StatefulSet", "default", item["metadata"]["name"]), {"status": {
                        "replicas": want, "readyReplicas": want, "currentReplicas": want}})
            for item in kube.list(Ref("apps/v1", "DaemonSet", "default")):
                if not (item.get("status") or {}).get("numberReady"):
                    kube.patch(Ref("apps/v1", "DaemonSet", "default", item["metadata"]["name"]), {"status": {
                        "desiredNumberScheduled": 1, "numberReady": 1, "currentNumberScheduled": 1}})
            for job in kube.list(Ref("batch/v1", "Job", "default")):
                name = job["metadata"]["name"]
                if not (job.get("status") or {}).get("succeeded"):
                    cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
                        "name": f"{name}-pod", "namespace": "default", "labels": {"job-name": name}},
                        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]}})
                    kube.patch(Ref("batch/v1", "Job", "default", name), {"status": {
                        "startTime": "2026-01-01T00:00:00Z", "succeeded": 1,
                        "completionTime": "2026-01-01T00:00:03Z"}})
        except Exception:  # noqa: BLE001 - an object deleted meanwhile: the next round sees it
            continue


def kubeconfig(path: str, url: str) -> str:
    config: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config", "current-context": "emulated",
        "clusters": [{"name": "emulated", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": "t"}}],
        "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "tester"}}]}
    with open(path, "w") as handle:
        yaml.safe_dump(config, handle)
    return path


def test_fluid_pysdk_flow_reaches_complete(tmp_path):
    if not os.path.exists(SDK_PYTHON):
        pytest.fail(f"no fluid-pysdk venv at {SDK_PYTHON}: `make test` creates it (make {ROOT}/.venv-fluid-pysdk)")
    stop = threading.Event()
    with EmulatedCluster() as cluster:
        cluster.start_operator(namespaces=("default",))
        cluster.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {}}})
        kubelet = threading.Thread(target=play_kubelet, args=(cluster, stop), daemon=True)
        kubelet.start()
        try:
            config = kubeconfig(str(tmp_path / "kubeconfig"), cluster.url)
            # the SDK's flows open their own client from $KUBECONFIG, as its docs assume
            done = subprocess.run([SDK_PYTHON, FLOWS, config], capture_output=True, text=True, timeout=240,
                                  env={**os.environ, "PYTHONPATH": "", "KUBECONFIG": config})
        finally:
            stop.set()
            kubelet.join(5)
        job = cluster.kube.get(Ref("batch/v1", "Job", "default", "sdkflow-step2-dataprocess")) or {}
        scripts = cluster.kube.get(Ref("v1", "ConfigMap", "default", "sdkflow-step2-dataprocess-scripts")) or {}
    assert done.returncode == 0, done.stderr[-3000:]
    pod = job["spec"]["template"]["spec"]
    assert {"name": "scratch", "emptyDir": {}} in pod["volumes"]
    assert {"name": "scratch", "mountPath": "/scratch"} in pod["containers"][0]["volumeMounts"]
    assert pod["containers"][0]["command"] == ["sh"] and scripts["data"]["preprocess.sh"] == "ls /data"
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["bound"] == "Bound" and seen["phases"] == ["Complete"] * 3
    assert seen["cache"]["cacheCapacity"] == "2.0 GiB"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))


def run_release_note_flow(kube: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fluid's flow (preload -> process -> migrate) through ``fluid_core.fluid`` on the
    cluster ``kube`` talks to: each step's status and the dataset's cache report."""
    from fluid_core.fluid import ClientConfig, FluidClient, constants, models

    client = FluidClient(ClientConfig(backend=kube))
    client.create_dataset("kdemo")
    dataset = client.get_dataset("kdemo")
    dataset.bind_runtime(replicas=2, cache_capacity_GiB=1)
    processor = models.Processor(script=models.ScriptProcessor(command=["sh"], source="ls /data"))
    flow = (dataset.preload("/").process(dataset_mountpath="/data", processor=processor)
            .migrate("/", constants.DATA_MIGRATE_DIRECTION_TO, models.ExternalStorage(uri="local:///tmp/o"))
            .run(run_id="kflow"))
    flow.wait(timeout_for_each_step=60)
    return flow.get_current_status(), dataset.report_status("cache")


def test_this_projects_fluid_sdk_on_kubernetes_reaches_complete():
    """The same flow through ``fluid_core.fluid`` with a Kubernetes backend."""
    stop = threading.Event()
    with EmulatedCluster() as cluster:
        cluster.start_operator(namespaces=("default",))
        cluster.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {}}})
        kubelet = threading.Thread(target=play_kubelet, args=(cluster, stop), daemon=True)
        kubelet.start()
        try:
            statuses, cache = run_release_note_flow(cluster.kube)
        finally:
            stop.set()
            kubelet.join(5)
    assert [next(iter(s.values()))["phase"] for s in statuses] == ["Complete"] * 3
    assert [next(iter(s)) for s in statuses] == ["kflow-step1", "kflow-step2", "kflow-step3"]
    assert cache["cacheCapacity"] == "2.0 GiB"
