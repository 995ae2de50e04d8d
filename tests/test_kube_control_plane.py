"""The operator (``fluidv operator``, a process of its own) against a real control plane:
kube-apiserver validating and pruning with the project's CRDs, the controller manager
making the StatefulSets' pods and collecting garbage, the scheduler placing them, and
KWOK playing the kubelet of three nodes (pods become Running and Ready, Job pods
Succeeded). Nothing here plays the kubelet by hand."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_plane import ControlPlane
from fluid_core.operator.kube import KubeClient, Ref

API = "data.fluid.io/v1alpha1"
NS = "default"
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    crds = tuple(yaml.safe_load(path.read_text()) for path in sorted((ROOT / "crds").glob("*.yaml")))
    with ControlPlane(tmp_path_factory.mktemp("control-plane"), nodes=3, crds=crds) as plane:
        yield plane


@pytest.fixture(scope="module")
def operator(control_plane):
    """``fluidv operator`` watching the default namespace, stopped by its pid."""
    log = open(control_plane.workdir / "operator.log", "ab")  # noqa: SIM115 - closed below
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig), "FLUIDV_LOCATIONS_SECONDS": "0",
           "FLUIDV_RESYNC_SECONDS": "1", "FLUIDV_FULL_APPLY_SECONDS": "5"}
    process = subprocess.Popen(
        [sys.executable, "-m", "fluid_core.cli", "operator", "--namespace", NS, "--webhook-port", "0",
         "--metrics-port", "0", "--liveness", f"http://127.0.0.1:{_free_port()}/healthz"],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def kube(control_plane, operator) -> KubeClient:
    assert operator.poll() is None, control_plane.log_tail("operator")
    return KubeClient(control_plane.api_client())


def create(kube: KubeClient, kind: str, name: str, spec: dict[str, Any]) -> None:
    kube.request("POST", Ref(API, kind, NS).path(), {"apiVersion": API, "kind": kind, "spec": spec,
                                                      "metadata": {"name": name, "namespace": NS}})


def status_of(kube: KubeClient, kind: str, name: str) -> dict[str, Any]:
    return (kube.get(Ref(API, kind, NS, name)) or {}).get("status") or {}


def pods_of(kube: KubeClient, statefulset: str) -> list[dict[str, Any]]:
    return [p for p in kube.list(Ref("v1", "Pod", NS)) if any(
        o.get("kind") == "StatefulSet" and o.get("name") == statefulset
        for o in p["metadata"].get("ownerReferences") or [])]


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def test_a_runtime_binds_with_real_pods_scales_prunes_removed_fields_and_is_collected(control_plane, kube):
    wait = control_plane.wait_for
    create(kube, "Dataset", "real", {})
    create(kube, "VineyardRuntime", "real", {"replicas": 2, "worker": {"nodeSelector": {"type": "kwok"}}})
    dataset = wait(lambda: (s := status_of(kube, "Dataset", "real")).get("phase") == "Bound" and s, timeout=120,
                   message=f"dataset bound; operator log: {control_plane.log_tail('operator')}")
    assert dataset["runtimes"][0]["name"] == "real"
    workers = pods_of(kube, "real-worker")
    assert len(workers) == 2 and all(ready(p) for p in workers)
    assert len({p["spec"]["nodeName"] for p in workers}) == 2  # one worker per node, by the real scheduler
    runtime = status_of(kube, "VineyardRuntime", "real")
    assert runtime["workerPhase"] == "Ready" and runtime["workerNumberReady"] == 2

    # scaling: a third pod on the third node
    kube.patch(Ref(API, "VineyardRuntime", NS, "real"), {"spec": {"replicas": 3}})
    wait(lambda: len([p for p in pods_of(kube, "real-worker") if ready(p)]) == 3, timeout=120, message="3 workers")
    assert len({p["spec"]["nodeName"] for p in pods_of(kube, "real-worker")}) == 3
    wait(lambda: status_of(kube, "VineyardRuntime", "real").get("workerNumberReady") == 3, message="status 3")

    # a field removed from the runtime is removed from the StatefulSet (server-side apply)
    template = lambda: kube.get(Ref("apps/v1", "StatefulSet", NS, "real-worker"))["spec"]["template"]["spec"]  # noqa: E731
    assert template().get("nodeSelector") == {"type": "kwok"}
    kube.request("PATCH", Ref(API, "VineyardRuntime", NS, "real").path(),
                 [{"op": "remove", "path": "/spec/worker/nodeSelector"}], "application/json-patch+json")
    wait(lambda: "type" not in (template().get("nodeSelector") or {}), timeout=60, message="nodeSelector pruned")

    # deletion: finalizers run, owned objects are collected, pods go away
    kube.delete(Ref(API, "VineyardRuntime", NS, "real"))
    kube.delete(Ref(API, "Dataset", NS, "real"))
    wait(lambda: kube.get(Ref(API, "Dataset", NS, "real")) is None, timeout=120, message="dataset gone")
    wait(lambda: not pods_of(kube, "real-worker") and not pods_of(kube, "real-master"), timeout=120,
         message="pods collected")
    assert kube.get(Ref("apps/v1", "StatefulSet", NS, "real-worker")) is None


def test_a_flow_of_jobs_runs_on_kwok_and_a_cron_operation_is_a_cronjob(control_plane, kube):
    wait = control_plane.wait_for
    create(kube, "Dataset", "jobs", {})
    create(kube, "VineyardRuntime", "jobs", {"replicas": 1})
    wait(lambda: status_of(kube, "Dataset", "jobs").get("phase") == "Bound", timeout=120, message="bound")
    create(kube, "DataLoad", "warm", {"dataset": {"name": "jobs"}})
    create(kube, "DataProcess", "next", {
        "dataset": {"name": "jobs"}, "processor": {"script": {"image": "busybox", "source": "echo hi"}},
        "runAfter": {"kind": "DataLoad", "name": "warm", "affinityStrategy": {"policy": "Require"}}})
    create(kube, "DataLoad", "nightly", {"dataset": {"name": "jobs"}, "policy": "Cron", "schedule": "0 3 * * *"})
    warm = wait(lambda: (s := status_of(kube, "DataLoad", "warm")).get("phase") == "Complete" and s, timeout=120,
                message="the DataLoad's Job completed (KWOK)")
    step = wait(lambda: (s := status_of(kube, "DataProcess", "next")).get("phase") == "Complete" and s, timeout=120,
                message="its successor completed")
    assert step["node"] == warm["node"]  # Require: the real scheduler put it on its predecessor's node
    cron = wait(lambda: kube.get(Ref("batch/v1", "CronJob", NS, "nightly-dataload")), message="CronJob")
    assert cron["spec"]["schedule"] == "0 3 * * *"
    for kind, name in (("DataLoad", "warm"), ("DataProcess", "next"), ("DataLoad", "nightly")):
        kube.delete(Ref(API, kind, NS, name))
    kube.delete(Ref(API, "VineyardRuntime", NS, "jobs"))
    kube.delete(Ref(API, "Dataset", NS, "jobs"))
    wait(lambda: kube.get(Ref("batch/v1", "Job", NS, "warm-dataload")) is None, timeout=60, message="Job collected")
