"""The data-operation reconciler as a plain function, and its Jobs' validity."""

from __future__ import annotations

import kubernetes_validate
import pytest

from fluid_core.models import parse
from fluid_core.reconcilers.operation import JobObserved, OperationObserved, job_manifest, reconcile_operation

NOW = "2026-01-01T00:00:00Z"


def op(kind: str, spec: dict, name: str = "op") -> object:
    return parse({"apiVersion": "data.fluid.io/v1alpha1", "kind": kind,
                  "metadata": {"name": name, "namespace": "ns", "uid": "u-1"}, "spec": spec})


OPS = [
    op("DataLoad", {"dataset": {"name": "d"}, "target": [{"path": "/x"}]}),
    op("DataProcess", {"dataset": {"name": "d"}, "processor": {"script": {
        "image": "python", "imageTag": "3.12", "command": ["python"], "source": "print(1)"}}}),
    op("DataProcess", {"dataset": {"name": "d"}, "processor": {"job": {"podSpec": {
        "containers": [{"name": "mine", "image": "busybox", "command": ["true"]}]}}}}),
    op("DataMigrate", {"dataset": {"name": "d"}, "policy": "Cron", "schedule": "0 * * * *",
                       "ttlSecondsAfterFinished": 60, "from": {"dataset": {"name": "d"}},
                       "to": {"externalStorage": {"uri": "s3://bucket/x"}}}),
]
#: Fluid's pod fields, as Fluid's samples write them.
POD_FIELDS = {
    "nodeSelector": {"disk": "ssd"},
    "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "schedulerName": "volcano",
    "podMetadata": {"labels": {"team": "ml"}, "annotations": {"note": "x"}},
    "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}},
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": {
        "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "x"}}}}]}},
}
FLUID_OPS = [
    op("DataLoad", {"dataset": {"name": "d"}, **POD_FIELDS}),
    op("DataMigrate", {"from": {"dataset": {"name": "d", "namespace": "ns", "path": "/"}},
                       "to": {"externalStorage": {"uri": "local:///mnt/out"}},
                       "image": "registry/migrate", "imageTag": "v1", "imagePullPolicy": "IfNotPresent",
                       **POD_FIELDS}),
    op("DataProcess", {"dataset": {"name": "d", "mountPath": "/mnt/data", "subPath": "part"}, "processor": {
        "serviceAccountName": "runner", "podMetadata": {"labels": {"team": "ml"}},
        "script": {"image": "bash", "imageTag": "5", "imagePullPolicy": "Always", "restartPolicy": "OnFailure",
                   "command": ["bash"], "source": "ls /mnt/data\n",
                   "resources": {"limits": {"cpu": "500m"}},
                   "volumes": [{"name": "extra", "emptyDir": {}}],
                   "volumeMounts": [{"name": "extra", "mountPath": "/extra"}]}}}),
]


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
@pytest.mark.parametrize("operation", OPS, ids=["load", "script", "job", "cron"])
def test_jobs_validate_strictly(operation, version):
    affinity = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}
    manifest = job_manifest(operation, affinity)
    kubernetes_validate.validate(manifest, version, strict=True)
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "u-1"


@pytest.mark.parametrize("operation", FLUID_OPS, ids=["load", "migrate", "script"])
def test_fluids_pod_fields_reach_the_job(operation):
    affinity = {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {
        "matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}}]}
    out = reconcile_operation(operation, OperationObserved(dataset_bound=True), None, now=NOW)
    for manifest in out.desired:
        kubernetes_validate.validate(manifest, "1.33.0", strict=True)
    job = out.desired[-1]
    template = job["spec"]["template"]
    pod, container = template["spec"], template["spec"]["containers"][0]
    assert template["metadata"]["labels"]["team"] == "ml"
    if operation.kind == "DataProcess":
        config_map = out.desired[0]
        assert config_map["kind"] == "ConfigMap" and config_map["data"] == {"preprocess.sh": "ls /mnt/data\n"}
        assert container["command"] == ["bash"] and container["args"] == ["/fluid-scripts/preprocess.sh"]
        assert container["image"] == "bash:5" and container["imagePullPolicy"] == "Always"
        assert {"name": "dataset", "mountPath": "/mnt/data", "subPath": "part"} in container["volumeMounts"]
        assert {"name": "extra", "emptyDir": {}} in pod["volumes"]
        assert pod["restartPolicy"] == "OnFailure" and pod["serviceAccountName"] == "runner"
        assert container["resources"] == {"limits": {"cpu": "500m"}}
        return
    assert pod["nodeSelector"] == {"disk": "ssd"} and pod["schedulerName"] == "volcano"
    assert pod["tolerations"] == POD_FIELDS["tolerations"]
    assert template["metadata"]["annotations"] == {"note": "x"}
    assert container["resources"] == POD_FIELDS["resources"]
    merged = job_manifest(operation, affinity)["spec"]["template"]["spec"]["affinity"]
    assert merged["podAntiAffinity"] == POD_FIELDS["affinity"]["podAntiAffinity"]  # the user's stays
    assert merged["nodeAffinity"] == affinity  # the step's placement is added
    if operation.kind == "DataMigrate":
        assert container["image"] == "registry/migrate:v1" and container["imagePullPolicy"] == "IfNotPresent"


def test_a_backup_runs_as_the_user_it_names():
    backup = op("DataBackup", {"dataset": "d", "backupPath": "/b", "runAs": {"uid": 1000, "gid": 100,
                                                                             "user": "me", "group": "us"}})
    manifest = job_manifest(backup, None)
    kubernetes_validate.validate(manifest, "1.33.0", strict=True)
    assert manifest["spec"]["template"]["spec"]["securityContext"] == {"runAsUser": 1000, "runAsGroup": 100}


def test_a_script_without_command_runs_the_images_entrypoint_on_the_source():
    script = op("DataProcess", {"dataset": {"name": "d"}, "processor": {"script": {"image": "tool", "source": "x"}}})
    container = job_manifest(script, None)["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container and container["args"] == ["/fluid-scripts/preprocess.sh"]


def phase(operation, observed) -> tuple[str, str]:
    out = reconcile_operation(operation, observed, None, now=NOW)
    reason = next(c["reason"] for c in out.status["conditions"])
    return out.status["phase"], reason


def test_phase_transitions():
    after = op("DataProcess", {"dataset": {"name": "d"}, "processor": {"function": "m:f"},
                               "runAfter": {"kind": "DataLoad", "name": "load"}})
    assert phase(after, OperationObserved(dataset_bound=False)) == ("Pending", "DatasetNotBound")
    assert phase(after, OperationObserved(True, predecessor_phase="")) == ("Failed", "PredecessorNotFound")
    assert phase(after, OperationObserved(True, predecessor_phase="Executing")) == ("Pending", "WaitingForPredecessor")
    assert phase(after, OperationObserved(True, predecessor_phase="Failed")) == ("Failed", "PredecessorFailed")
    assert phase(after, OperationObserved(True, predecessor_phase="Complete")) == ("Executing", "JobRunning")
    assert phase(after, OperationObserved(True, "Complete", job=JobObserved(succeeded=1))) == ("Complete", "JobSucceeded")
    assert phase(after, OperationObserved(True, "Complete", job=JobObserved(failed=3))) == ("Failed", "JobFailed")
    waiting = reconcile_operation(after, OperationObserved(True, predecessor_phase="Executing"), None, now=NOW)
    assert waiting.desired == []  # nothing runs before its predecessor completes
    on_event = op("DataProcess", {"dataset": {"name": "d"}, "processor": {"function": "m:f"}, "policy": "OnEvent",
                                  "onEvent": {"objectPattern": "x*"}})
    assert phase(on_event, OperationObserved(True)) == ("Failed", "NotSupported")


def test_one_gate_for_both_executors():
    from fluid_core.models.operations import RunAfter
    from fluid_core.reconcilers.lifecycle import gate

    after = RunAfter(kind="DataLoad", name="load")
    assert gate(None, None).go and gate(None, None).waiting_for == {}
    assert gate(after, "Complete").go and gate(after, "Complete").waiting_for == {"operationComplete": False}
    assert (gate(after, "Executing").phase, gate(after, "Executing").waiting_for) == (
        "Pending", {"operationComplete": True})
    assert gate(after, "Failed").reason == "PredecessorFailed" and gate(after, "").reason == "PredecessorNotFound"
    assert gate(after, "Complete", dataset="d", dataset_bound=False).message == "waiting for Dataset d to be Bound"
    assert gate(after, "Complete", cycle=("DataLoad/a", "DataLoad/b")).message.startswith(
        "runAfter makes a cycle: DataLoad/a -> DataLoad/b -> DataLoad/a")
