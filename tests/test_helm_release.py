"""The Helm chart on the real control plane, with a real helm and kubectl: installed,
used by an operator holding nothing but the chart's ServiceAccount token (the API
server's audit log shows what it asked for and was given), upgraded with its webhook
certificate kept, and uninstalled.

The operator runs as a process here, not in the chart's Deployment (no container
runtime): the chart is installed with ``operator.replicas=0`` and ``webhook.url``, its
offering for an operator run outside the cluster, and the operator serves the chart's
own certificate."""

from __future__ import annotations

import base64
import functools
import os
import subprocess
from pathlib import Path

import pytest
from control_plane import (
    ControlPlane,
    OperatorProcess,
    binaries,
    create_resource,
    resource_status,
)

from fluid_core.kube import KubeClient, KubeError, Ref
from vineyard_runtime.plumbing.ports import free_ports

API = "data.fluid.io/v1alpha1"
CHART = str(Path(__file__).resolve().parent.parent / "charts" / "fluid-vineyard")
RELEASE, SYSTEM, NS = "fv", "fluid-system", "team"
ACCOUNT = f"system:serviceaccount:{SYSTEM}:{RELEASE}"
OPERATIONS = (
    ("DataLoad", "warm", {"dataset": {"name": "shared"}}),
    ("DataProcess", "step", {"dataset": {"name": "shared"}, "runAfter": {"kind": "DataLoad", "name": "warm"},
                             "processor": {"script": {"image": "busybox", "source": "echo hi"}}}),
    ("DataMigrate", "out", {"from": {"dataset": {"name": "shared"}}, "to": {"externalStorage": {
        "uri": "local:///mnt/out"}}, "runAfter": {"kind": "DataProcess", "name": "step"}}),
    ("DataBackup", "keep", {"dataset": "shared", "backupPath": "local:///var/backups/team"}),
    ("DataLoad", "nightly", {"dataset": {"name": "shared"}, "policy": "Cron", "schedule": "0 3 * * *"}),
)
#: Granted by the chart's ClusterRole, yet not asked for by the flow below, and why.
GRANTED_UNUSED = {
    ("", "namespaces", "list"): "kopf lists namespaces for glob patterns in operator.namespaces",
    ("", "namespaces", "watch"): "and watches them",
    ("", "pods", "delete"): "restarts the workers when the etcd master is replaced (tests/test_kube_real_nodes.py)",
}


def run(tool: str, *args: str, plane: ControlPlane, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``helm`` or ``kubectl`` of the built control plane, as the administrator."""
    home = plane.workdir / "home"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(plane.kubeconfig),
           "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    done = subprocess.run([str(binaries() / "bin" / tool), *args], capture_output=True, text=True, env=env,
                          timeout=180)
    if check:
        assert done.returncode == 0, f"{tool} {' '.join(args)}: {done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    with ControlPlane(tmp_path_factory.mktemp("helm-plane"), nodes=3, audit=True) as control_plane:
        yield control_plane


create = functools.partial(create_resource, namespace=NS)
status_of = functools.partial(resource_status, namespace=NS)


def secret_and_bundle(kube: KubeClient) -> tuple[dict[str, str], str]:
    secret = kube.request("GET", f"/api/v1/namespaces/{SYSTEM}/secrets/{RELEASE}-webhook-tls")
    webhook = kube.request("GET", f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
                                  f"{RELEASE}-placement")
    assert secret is not None and webhook is not None
    return secret["data"], webhook["webhooks"][0]["clientConfig"]["caBundle"]


def granted(kube: KubeClient) -> set[tuple[str, str, str]]:
    role = kube.request("GET", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{RELEASE}-operator")
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_install_operate_under_the_charts_account_upgrade_and_uninstall(plane, tmp_path):
    kube = KubeClient(plane.api_client())
    wait = plane.wait_for
    port = free_ports(1)[0]
    values = ["--set", "operator.replicas=0", "--set", f"webhook.url=https://127.0.0.1:{port}/mutate-pods",
              "--set", "webhook.failurePolicy=Fail",
              # the backup below writes to the node's /var/backups: allowed through the chart's policy
              "--set-json", 'policy.hostPathRoots=["/mnt", "/var/backups"]']
    run("helm", "install", RELEASE, CHART, "-n", SYSTEM, "--create-namespace", "--wait", "--timeout", "2m",
        *values, plane=plane)
    data, bundle = secret_and_bundle(kube)
    assert bundle == data["ca.crt"]
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(base64.b64decode(data["tls.crt"]))
    key.write_bytes(base64.b64decode(data["tls.key"]))
    kube.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})

    account = plane.service_account_kubeconfig(SYSTEM, RELEASE, tmp_path / "operator.kubeconfig")
    policy = tmp_path / "policy.yaml"  # what the chart's Deployment mounts for its operator
    policy.write_text(kube.get(Ref("v1", "ConfigMap", SYSTEM, f"{RELEASE}-placement"))["data"]["policy.yaml"])
    operator = OperatorProcess(plane, None, (str(cert), str(key)), port, kubeconfig=account, policy=policy)
    operator.start()
    try:
        # a runtime before its dataset: a Warning event, then the pair binds
        create(kube, "VineyardRuntime", "shared", {"replicas": 1})
        wait(lambda: any(e.get("reason") == "DatasetNotFound" for e in kube.request(
            "GET", f"/api/v1/namespaces/{NS}/events")["items"]), message="the DatasetNotFound event")
        create(kube, "Dataset", "shared", {})
        # the worker pods pass the chart's webhook (failurePolicy Fail: no webhook, no pods)
        wait(lambda: status_of(kube, "Dataset", "shared").get("phase") == "Bound", timeout=120,
             message="dataset bound")

        # kubectl shows the CRDs' printer columns and scales a runtime through its scale subresource
        table = run("kubectl", "get", "datasets,vineyardruntimes", "-n", NS, plane=plane).stdout
        assert "PHASE" in table and "Bound" in table and "WORKER PHASE" in table, table
        run("kubectl", "scale", "vineyardruntime/shared", "--replicas=3", "-n", NS, plane=plane)
        wait(lambda: status_of(kube, "VineyardRuntime", "shared").get("workerNumberReady") == 3, timeout=120,
             message="scaled to 3")
        wide = run("kubectl", "get", "vineyardruntime/shared", "-n", NS, "-o", "wide", plane=plane).stdout
        assert "READY WORKERS" in wide.replace("\t", " "), wide

        # every kind of operation: a flow of Jobs completed by KWOK, and a CronJob
        for kind, name, spec in OPERATIONS:
            create(kube, kind, name, spec)
        for kind, name, spec in OPERATIONS:
            if spec.get("policy") != "Cron":
                wait(lambda: status_of(kube, kind, name).get("phase") == "Complete", timeout=120,
                     message=f"{kind} {name} complete")
        assert kube.get(Ref("batch/v1", "CronJob", NS, "nightly-dataload"))
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader", "namespace": NS},
               "spec": {"containers": [{"name": "c", "image": "busybox"}],
                        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "shared"}}]}}
        admitted = kube.request("POST", f"/api/v1/namespaces/{NS}/pods", pod)
        assert admitted["spec"].get("affinity"), "the chart's webhook placed the pod"
        # ... and gave it the runtime's peer label, which no other pod may take for itself
        assert admitted["metadata"]["labels"]["fluid.io/vineyard-peer"] == "shared"
        assert all(p["metadata"]["labels"].get("fluid.io/vineyard-peer") == "shared"
                   for p in kube.list(Ref("v1", "Pod", NS)) if p["metadata"]["name"].startswith("shared-"))
        stranger = {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "stranger", "namespace": NS, "labels": {"fluid.io/vineyard-peer": "shared"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        with pytest.raises(KubeError, match="may carry it") as refused:
            kube.request("POST", f"/api/v1/namespaces/{NS}/pods", stranger)
        assert refused.value.status == 403
        plain = kube.request("POST", f"/api/v1/namespaces/{NS}/pods", {
            **stranger, "metadata": {"name": "stranger", "namespace": NS}})
        with pytest.raises(KubeError, match="may carry it"):  # nor by relabelling a pod it has
            kube.request("PATCH", f"/api/v1/namespaces/{NS}/pods/stranger",
                         {"metadata": {"labels": {"fluid.io/vineyard-peer": "shared"}}}, "application/merge-patch+json")
        assert plain and "fluid.io/vineyard-peer" not in (kube.get(Ref("v1", "Pod", NS, "stranger"))["metadata"]
                                                          .get("labels") or {})

        # an upgrade changes the webhook's settings and keeps its certificate
        run("helm", "upgrade", RELEASE, CHART, "-n", SYSTEM, *values, "--set", "webhook.timeoutSeconds=7",
            plane=plane)
        after, bundle_after = secret_and_bundle(kube)
        assert after == data and bundle_after == bundle
        webhook = kube.request("GET", f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
                                      f"{RELEASE}-placement")["webhooks"][0]
        assert webhook["timeoutSeconds"] == 7
        pod["metadata"]["name"] = "reader-2"
        assert kube.request("POST", f"/api/v1/namespaces/{NS}/pods", pod)["spec"].get("affinity")

        for kind, name in (("Pod", "reader"), ("Pod", "reader-2"), ("Pod", "stranger")):
            kube.request("DELETE", f"/api/v1/namespaces/{NS}/pods/{name}?gracePeriodSeconds=0")
        for kind, name, _ in OPERATIONS:
            kube.delete(Ref(API, kind, NS, name))
        for kind in ("VineyardRuntime", "Dataset"):
            kube.delete(Ref(API, kind, NS, "shared"))
        wait(lambda: kube.get(Ref(API, "Dataset", NS, "shared")) is None
             and kube.get(Ref(API, "VineyardRuntime", NS, "shared")) is None, timeout=120,
             message="deleted through the finalizers")
    finally:
        operator.stop()

    # what the operator asked for under the chart's account: nothing forbidden, nothing spare
    events = plane.audit_events(ACCOUNT)
    forbidden = sorted({(e["verb"], e["requestURI"]) for e in events if e["responseStatus"]["code"] == 403})
    assert not forbidden, forbidden
    used = set()
    for event in events:
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used.add((ref.get("apiGroup", ""), resource, event["verb"]))
        if event["verb"] == "patch" and event["responseStatus"]["code"] == 201:  # an apply that created
            used.add((ref.get("apiGroup", ""), resource, "create"))
    spare = granted(kube) - used - set(GRANTED_UNUSED)
    assert not spare, f"the chart grants what the operator never asked for: {sorted(spare)}"

    run("helm", "uninstall", RELEASE, "-n", SYSTEM, "--wait", plane=plane)
    assert kube.request("GET", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{RELEASE}-operator") is None
    assert kube.request("GET", f"/api/v1/namespaces/{SYSTEM}/secrets/{RELEASE}-webhook-tls") is None
    assert kube.request("GET", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
                               f"{RELEASE}-placement") is None
    # Helm keeps the CRDs it installed (and with them every user's data resources)
    assert kube.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/datasets.data.fluid.io")


def test_the_chart_refuses_two_operator_replicas(plane):
    """The operator runs kopf standalone: a second replica would reconcile everything
    twice, so the chart's schema refuses it before anything is installed."""
    done = run("helm", "install", "two", CHART, "-n", "other", "--create-namespace", "--set", "operator.replicas=2",
               plane=plane, check=False)
    assert done.returncode != 0 and "replicas" in done.stderr, done.stderr
    assert run("helm", "list", "-A", "-q", plane=plane).stdout.split() in ([], [RELEASE])
