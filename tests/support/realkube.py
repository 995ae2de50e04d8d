"""Driving a ``RealCluster`` as its administrator: helm and kubectl of the built control
plane, the chart installed with the project image, a dataset bound, pods of the image
that mount it, and Python run in them by ``kubectl exec``.

Shared by the end-to-end tests and the benchmarks on real pods.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

from support.realcluster import RealCluster

from fluid_core.kube import KubeClient, Ref

CHART = str(Path(__file__).resolve().parents[2] / "charts" / "fluid-vineyard")
API = "data.fluid.io/v1alpha1"


def tool(cluster: RealCluster, name: str, *args: str, check: bool = True, stdin: str | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``helm`` or ``kubectl`` of the built control plane, as the administrator."""
    done = subprocess.run(_argv(name, *args), capture_output=True, text=True, env=_env(cluster), input=stdin,
                          timeout=timeout)
    if check:
        assert done.returncode == 0, f"{name} {' '.join(args[:3])}: {done.stdout[-2000:]} {done.stderr[-2000:]}"
    return done


def _argv(name: str, *args: str) -> list[str]:
    from control_plane import binaries

    return [str(binaries() / "bin" / name), *args]


def _env(cluster: RealCluster) -> dict[str, str]:
    home = cluster.control_plane.workdir / "home"
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(cluster.control_plane.kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data")}


def install_chart(cluster: RealCluster, release: str, namespace: str, *settings: str) -> KubeClient:
    """The chart, installed by helm with the project image (its operator in-cluster); the
    administrator's client."""
    repository, tag = cluster.images["project"].rsplit(":", 1)
    tool(cluster, "helm", "install", release, CHART, "-n", namespace, "--create-namespace", "--wait",
         "--timeout", "5m", "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
         *[arg for setting in settings for arg in ("--set", setting)])
    return KubeClient(cluster.control_plane.api_client())


def pods(kube: KubeClient, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    query = f"?labelSelector={selector}" if selector else ""
    return (kube.request("GET", f"/api/v1/namespaces/{namespace}/pods{query}") or {}).get("items", [])


def ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and all(c.get("ready") for c in status.get("containerStatuses") or [])


def status_of(kube: KubeClient, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return (kube.get(Ref(API, kind, namespace, name)) or {}).get("status") or {}


def describe(kube: KubeClient, namespace: str) -> str:
    """The namespace's pods, their nodes, phases, and per container its restarts, readiness,
    state and last end (for failure messages)."""
    def container(c: dict[str, Any]) -> list[Any]:
        state = {k: v.get("startedAt") or v.get("reason") for k, v in (c.get("state") or {}).items()}
        ended = (c.get("lastState") or {}).get("terminated") or {}
        last = f"{ended.get('reason')} {ended.get('exitCode')} at {ended.get('finishedAt')}" if ended else None
        return [c.get("restartCount"), c.get("ready"), state, last]

    return json.dumps([(p["metadata"]["name"], p["spec"].get("nodeName"), (p.get("status") or {}).get("phase"),
                        [container(c) for c in (p.get("status") or {}).get("containerStatuses") or []])
                       for p in pods(kube, namespace)])


def bind(cluster: RealCluster, kube: KubeClient, namespace: str, name: str, runtime: dict[str, Any]) -> None:
    """A Dataset and its VineyardRuntime (``runtime``: its spec), waited for until Bound with
    every node's bridge ready."""
    if kube.request("GET", f"/api/v1/namespaces/{namespace}") is None:
        kube.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": namespace}})
    for kind, spec in (("Dataset", {}), ("VineyardRuntime", runtime)):
        kube.request("POST", f"/apis/{API}/namespaces/{namespace}/{kind.lower()}s",
                     {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec})
    wait = cluster.control_plane.wait_for
    wait(lambda: status_of(kube, namespace, "Dataset", name).get("phase") == "Bound", timeout=300,
         message=lambda: f"the dataset Bound: {describe(kube, namespace)}")
    wait(lambda: status_of(kube, namespace, "VineyardRuntime", name).get("fusePhase") == "Ready", timeout=120,
         message=lambda: f"the bridges ready: {describe(kube, namespace)}")


def start_sleeper(cluster: RealCluster, kube: KubeClient, namespace: str, name: str, node: str,
                  claim: str) -> float:
    """A pod of the image on ``node`` that mounts the dataset ``claim`` at /data and waits,
    for ``exec_python``; the seconds from its creation to Ready."""
    began = time.monotonic()
    kube.request("POST", f"/api/v1/namespaces/{namespace}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "containers": [{
            "name": "main", "image": cluster.images["project"], "imagePullPolicy": "IfNotPresent",
            "command": ["sleep", "infinity"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}})
    cluster.control_plane.wait_for(lambda: ready(kube.get(Ref("v1", "Pod", namespace, name)) or {}), timeout=120,
                                   message=lambda: f"{name} running: {describe(kube, namespace)}")
    return time.monotonic() - began


def exec_python(cluster: RealCluster, namespace: str, pod: str, code: str, *, check: bool = True,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``code`` run by python3 in ``pod`` (kubectl exec: through the API server and the pod's
    kubelet, no admission webhook)."""
    return tool(cluster, "kubectl", "exec", "-n", namespace, pod, "--", "python3", "-c", textwrap.dedent(code),
                check=check, timeout=timeout)


def exec_python_in_background(cluster: RealCluster, namespace: str, pod: str, code: str) -> subprocess.Popen[str]:
    """``exec_python`` without waiting: its stdout is a pipe (the caller reads and waits)."""
    argv = _argv("kubectl", "exec", "-n", namespace, pod, "--", "python3", "-u", "-c", textwrap.dedent(code))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(cluster))


__all__ = ["API", "CHART", "bind", "describe", "exec_python", "exec_python_in_background", "install_chart", "pods",
           "ready", "start_sleeper", "status_of", "tool"]
