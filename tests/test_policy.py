"""The operator is no confused deputy: a user who may only create these CRs gets, through
the operator's account, no more than the operator's policy allows (images, node paths,
the Pod Security level, ServiceAccounts), and a refused CR gets nothing created."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from fluid_core.models import parse
from fluid_core.reconcilers.engine import VineyardEngine
from fluid_core.reconcilers.observed import RuntimeObserved
from fluid_core.reconcilers.operation import OperationObserved, job_manifest, reconcile_operation
from fluid_core.reconcilers.policy import Policy, PolicyError
from fluid_core.reconcilers.runtime import reconcile_runtime
from fluid_core.reconcilers.translate import kube_runtime

API = "data.fluid.io/v1alpha1"
NOW = "2026-01-01T00:00:00Z"


def processing(pod_spec: dict, name: str = "step", **processor) -> object:
    return parse({"apiVersion": API, "kind": "DataProcess", "metadata": {"name": name, "namespace": "ns", "uid": "u"},
                  "spec": {"dataset": {"name": "d"}, "processor": {"job": {"podSpec": pod_spec}, **processor}}})


def container(**extra) -> dict:
    return {"name": "c", "image": "busybox", "command": ["true"], **extra}


HOSTILE_PODS = {
    "privileged": ({"containers": [container(securityContext={"privileged": True})]}, "privileged containers"),
    "hostPID": ({"hostPID": True, "containers": [container()]}, "spec.hostPID"),
    "host root": ({"containers": [container()], "volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
                  "hostPath volumes are not allowed"),
    "root user": ({"securityContext": {"runAsUser": 0}, "containers": [container()]}, "runAsUser 0"),
    "added capability": ({"containers": [container(securityContext={"capabilities": {"add": ["SYS_ADMIN"]}})]},
                         "may not be added"),
    "escalation": ({"containers": [container(securityContext={"allowPrivilegeEscalation": True})]},
                   "allowPrivilegeEscalation must be false"),
}


@pytest.mark.parametrize("case", HOSTILE_PODS, ids=list(HOSTILE_PODS))
def test_a_hostile_pod_spec_fails_the_operation_and_creates_no_job(case):
    pod, needle = HOSTILE_PODS[case]
    outcome = reconcile_operation(processing(pod), OperationObserved(dataset_bound=True), None, now=NOW)
    assert outcome.desired == []
    assert outcome.status.phase == "Failed"
    assert needle in outcome.status.conditions[-1].message
    assert [e[1] for e in outcome.events] == ["PolicyViolation"]


def test_a_fluid_style_pod_spec_runs_with_restricted_settings_filled_in():
    manifest = job_manifest(processing({"containers": [container()]}), None)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["containers"][0]["securityContext"] == {"allowPrivilegeEscalation": False,
                                                       "capabilities": {"drop": ["ALL"]}}


def test_looser_levels_allow_what_they_allow_and_no_more():
    privileged = {"containers": [container(securityContext={"privileged": True})]}
    baseline = Policy(pod_security="baseline")
    root = {"securityContext": {"runAsUser": 0}, "containers": [container()]}
    assert job_manifest(processing(root), None, rules=baseline)  # root is baseline's
    outcome = reconcile_operation(processing(privileged), OperationObserved(dataset_bound=True), None, now=NOW,
                                  rules=baseline)
    assert outcome.status.phase == "Failed" and not outcome.desired
    assert job_manifest(processing(privileged), None, rules=Policy(pod_security="privileged"))


def test_images_and_service_accounts_outside_the_policy_are_refused():
    rules = Policy(allowed_images=("registry.example.com/",), service_accounts=("runner",))
    outcome = reconcile_operation(processing({"containers": [container()]}), OperationObserved(dataset_bound=True),
                                  None, now=NOW, rules=rules)
    assert "image 'busybox' is not allowed" in outcome.status.conditions[-1].message
    fine = {"containers": [container(image="registry.example.com/tools:1")]}
    assert job_manifest(processing(fine, serviceAccountName="runner"), None, rules=rules)
    outcome = reconcile_operation(processing(fine, serviceAccountName="cluster-admin-sa"),
                                  OperationObserved(dataset_bound=True), None, now=NOW, rules=rules)
    assert "serviceAccountName 'cluster-admin-sa' is not allowed" in outcome.status.conditions[-1].message


def test_a_backup_to_the_nodes_disk_is_held_to_the_host_roots():
    def backup(path: str) -> object:
        return parse({"apiVersion": API, "kind": "DataBackup", "metadata": {"name": "b", "namespace": "ns"},
                      "spec": {"dataset": {"name": "d"}, "backupPath": f"local://{path}"}})

    assert job_manifest(backup("/mnt/backups"), None)
    outcome = reconcile_operation(backup("/etc"), OperationObserved(dataset_bound=True), None, now=NOW)
    assert outcome.status.phase == "Failed" and "host path '/etc' is outside" in outcome.status.conditions[-1].message


def runtime_engine(spec: dict) -> VineyardEngine:
    runtime = parse({"apiVersion": API, "kind": "VineyardRuntime", "metadata": {"name": "r", "namespace": "ns"},
                     "spec": spec})
    dataset = parse({"apiVersion": API, "kind": "Dataset", "metadata": {"name": "r", "namespace": "ns"}, "spec": {}})
    return VineyardEngine(kube_runtime(runtime, dataset))


@pytest.mark.parametrize("spec, rules, needle", [
    ({"tieredstore": {"levels": [{"mediumtype": "SSD", "path": "/", "quota": "1Gi"}]}}, Policy(), "host path '/'"),
    ({"tieredstore": {"levels": [{"mediumtype": "SSD", "path": "/mnt/../etc", "quota": "1Gi"}]}}, Policy(),
     "is outside"),
    ({"worker": {"image": "evil/vineyardd"}}, Policy(allowed_images=("vineyardcloudnative/",)),
     "spec.worker.image: image 'evil/vineyardd:"),
])
def test_a_runtime_asking_for_too_much_gets_nothing_created(spec, rules, needle):
    outcome = reconcile_runtime(runtime_engine(spec), RuntimeObserved(dataset_exists=True), None, now=NOW,
                                rules=rules)
    assert outcome.desired == [] and not outcome.label_nodes
    ready = next(c for c in outcome.status.conditions if c.type == "Ready")
    assert ready.reason == "PolicyViolation" and needle in ready.message
    assert [e[1] for e in outcome.events] == ["PolicyViolation"]
    again = reconcile_runtime(runtime_engine(spec), RuntimeObserved(dataset_exists=True), outcome.status, now=NOW,
                              rules=rules)
    assert again.events == []  # said once


def test_a_runtime_within_the_policy_is_set_up():
    spec = {"tieredstore": {"levels": [{"mediumtype": "MEM", "path": "/dev/shm", "quota": "1Gi"}]}}
    outcome = reconcile_runtime(runtime_engine(spec), RuntimeObserved(dataset_exists=True), None, now=NOW)
    assert outcome.desired


def test_the_policy_file_is_checked_by_the_operator_command(tmp_path):
    bad = tmp_path / "policy.yaml"
    bad.write_text(yaml.safe_dump({"podSecurity": "lenient"}))
    done = subprocess.run([sys.executable, "-m", "fluid_core.cli", "operator", "--policy", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "podSecurity 'lenient' is none of privileged, baseline, restricted" in done.stderr
    with pytest.raises(PolicyError, match="unknown policy settings"):
        Policy.from_mapping({"allowImages": ["x"]})
    with pytest.raises(PolicyError, match="other than /"):
        Policy(host_path_roots=("/",))


@pytest.mark.parametrize("spec", [{}, {"master": {"replicas": 3}}], ids=["default", "three-masters"])
def test_the_runtimes_own_containers_gain_no_privilege(spec):
    engine = runtime_engine(spec)
    objects = engine.setup_master() + engine.setup_workers() + engine.setup_bridge()
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("StatefulSet", "DaemonSet")]
    assert len(pods) == 3
    for pod in pods:
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert c["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not pod.get("hostPID") and not pod.get("hostIPC")


def test_etcd_listens_on_its_pods_address_and_loopback_not_every_interface():
    (master,) = [o for o in runtime_engine({}).setup_master() if o["kind"] == "StatefulSet"]
    container = master["spec"]["template"]["spec"]["containers"][0]
    argv = container["command"]
    assert not any("0.0.0.0" in arg for arg in argv)  # noqa: S104 - what must not be there
    client = argv[argv.index("--listen-client-urls") + 1]
    assert client.startswith("http://$(POD_IP):") and ",http://127.0.0.1:" in client
    assert argv[argv.index("--listen-peer-urls") + 1].startswith("http://$(POD_IP):")
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in container["env"]
