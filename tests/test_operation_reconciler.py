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
    assert manifest["spec"]["template"]["spec"]["securityContext"] == {
        "runAsUser": 1000, "runAsGroup": 100, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def test_a_script_without_command_runs_the_images_entrypoint_on_the_source():
    script = op("DataProcess", {"dataset": {"name": "d"}, "processor": {"script": {"image": "tool", "source": "x"}}})
    container = job_manifest(script, None)["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container and container["args"] == ["/fluid-scripts/preprocess.sh"]


def phase(operation, observed) -> tuple[str, str]:
    out = reconcile_operation(operation, observed, None, now=NOW)
    reason = next(c.reason for c in out.status.conditions)
    return out.status.phase, reason


def test_phase_transitions():
    after = op("DataProcess", {"dataset": {"name": "d"}, "processor": {"function": "m:f"},
                               "runAfter": {"kind": "DataLoad", "name": "load"}})
    assert phase(after, OperationObserved(dataset_bound=False)) == ("Pending", "DatasetNotBound")
    assert phase(after, OperationObserved(True, predecessor_phase="")) == ("Failed", "PredecessorNotFound")
    assert phase(after, OperationObserved(True, predecessor_phase="Executing")) == ("Pending", "WaitingForPredecessor")
    assert phase(after, OperationObserved(True, predecessor_phase="Failed")) == ("Failed", "PredecessorFailed")
    assert phase(after, OperationObserved(True, predecessor_phase="Complete")) == ("Executing", "Launched")
    assert phase(after, OperationObserved(True, "Complete", job=JobObserved())) == ("Executing", "Running")
    assert phase(after, OperationObserved(True, "Complete", job=JobObserved(succeeded=1))) == ("Complete", "RunSucceeded")
    assert phase(after, OperationObserved(True, "Complete", job=JobObserved(failed=3))) == ("Failed", "RunFailed")
    waiting = reconcile_operation(after, OperationObserved(True, predecessor_phase="Executing"), None, now=NOW)
    assert waiting.desired == []  # nothing runs before its predecessor completes


def test_dataload_replicas_are_one_pod_per_node_of_an_indexed_job():
    import kubernetes_validate

    load = op("DataLoad", {"dataset": {"name": "d"}, "target": [{"path": "/a", "replicas": 3}, {"path": "/b"}],
                           "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                               {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "zone"}]}}})
    job = job_manifest(load, None)
    kubernetes_validate.validate(job, "1.33.0", strict=True)
    assert (job["spec"]["completions"], job["spec"]["parallelism"], job["spec"]["completionMode"]) == (3, 3, "Indexed")
    apart = job["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert [term["topologyKey"] for term in apart] == ["zone", "kubernetes.io/hostname"]  # the user's term stays
    assert "completions" not in job_manifest(op("DataLoad", {"dataset": {"name": "d"}}), None)["spec"]


def test_fluid_backup_paths_are_volumes_of_the_backup_pod():
    import kubernetes_validate

    for path, volume, seen in (("pvc://backups/team/a", {"persistentVolumeClaim": {"claimName": "backups"}}, True),
                               ("local:///mnt/backups", {"hostPath": {"path": "/mnt/backups",
                                                                      "type": "DirectoryOrCreate"}}, True),
                               ("s3://bucket/backups", None, False)):
        backup = op("DataBackup", {"dataset": "d", "backupPath": path})
        manifest = job_manifest(backup, None)
        kubernetes_validate.validate(manifest, "1.33.0", strict=True)
        pod = manifest["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert ("fluid-backup" in volumes) is seen
        if seen:
            assert {k: v for k, v in volumes["fluid-backup"].items() if k != "name"} == volume
            assert {"name": "fluid-backup", "mountPath": "/fluid-backup"} in pod["containers"][0]["volumeMounts"]


def test_a_job_removed_after_it_ended_is_not_run_again():
    """``ttlSecondsAfterFinished`` deletes the Job; its result stays in the status."""
    load = op("DataLoad", {"dataset": {"name": "d"}, "ttlSecondsAfterFinished": 0})
    ran = reconcile_operation(load, OperationObserved(True, job=JobObserved(
        succeeded=1, start_time=NOW, completion_time=NOW)), None, now=NOW)
    assert ran.status.phase == "Complete"
    gone = reconcile_operation(load, OperationObserved(True, job=None), ran.status, now=NOW)
    assert gone.status.phase == "Complete" and gone.desired == []


def test_each_on_event_run_is_a_job_of_its_own():
    on_event = op("DataProcess", {"dataset": {"name": "d"}, "processor": {"function": "m:f"}, "policy": "OnEvent",
                                  "onEvent": {"objectPattern": "x*"}})
    idle = reconcile_operation(on_event, OperationObserved(True), None, now=NOW)
    assert (idle.status.phase, idle.desired) == ("Pending", [])
    fired = reconcile_operation(on_event, OperationObserved(True, due=True), idle.status, now=NOW)
    assert fired.status.phase == "Executing" and fired.status.infos["runs"] == "1"
    assert [m["metadata"]["name"] for m in fired.desired] == ["op-dataprocess-1"]
    done = reconcile_operation(on_event, OperationObserved(True, job=JobObserved(succeeded=1)), fired.status, now=NOW)
    assert done.status.phase == "Complete"
    again = reconcile_operation(on_event, OperationObserved(True, job=JobObserved(succeeded=1), due=True),
                                done.status, now=NOW)
    assert [m["metadata"]["name"] for m in again.desired] == ["op-dataprocess-2"]
    assert again.status.phase == "Executing" and again.status.duration == "Unfinished"


def test_one_lifecycle_decides_for_both_executors():
    from fluid_core.reconcilers.lifecycle import EventWatch, Observed, RunState, decide, gate

    go, wait = gate(None, None), gate(None, None, dataset="d", dataset_bound=False)
    assert (decide("Once", go, Observed()).phase, decide("Once", go, Observed()).launch) == ("Executing", True)
    assert decide("Once", wait, Observed()).reason == "DatasetNotBound"
    assert decide("Once", go, Observed(RunState.SUCCEEDED, 1, due=True)).phase == "Complete"  # Once runs once
    assert decide("Cron", go, Observed()).reason == "WaitingForTrigger"
    assert decide("Cron", go, Observed(RunState.SUCCEEDED, 1, due=True)).launch
    assert not decide("Cron", go, Observed(RunState.RUNNING, 1, due=True)).launch  # never two runs at once
    assert decide("OnEvent", go, Observed(RunState.FAILED, 1, due=True, message="boom")).phase == "Failed"
    # once it has run, its own runs decide, not the gate
    assert decide("Cron", wait, Observed(RunState.SUCCEEDED, 1)).phase == "Complete"

    watch = EventWatch("ns/d/x*", debounce=1.0)
    assert not watch.due({"ns/d/x1": "o1"}, 0.0)  # the baseline
    assert not watch.due({"ns/d/x1": "o1", "ns/d/y": "o9"}, 0.5)  # not a matching name
    assert not watch.due({"ns/d/x1": "o2"}, 1.0)  # re-put: waits out the debounce
    assert watch.due({"ns/d/x1": "o2"}, 2.0)
    assert not watch.due({}, 3.0)  # a deletion fires nothing


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


def test_derived_names_keep_fluids_form_when_short_and_a_hash_when_long():
    from fluid_core.reconcilers.operation import job_name
    from vineyard_runtime.naming import derived_name

    def op(name: str, kind: str = "DataProcess"):
        return parse({"apiVersion": "data.fluid.io/v1alpha1", "kind": kind, "metadata": {"name": name},
                      "spec": {"dataset": {"name": "d"}, "processor": {"script": {"image": "b", "source": "x"}}}})

    assert job_name(op("warm")) == "warm-dataprocess" and job_name(op("warm"), 3) == "warm-dataprocess-3"
    long = [f"{'x' * 60}-{i}" for i in range(3)]
    names = {job_name(op(n), run) for n in long for run in (0, 1, 12)}
    assert len(names) == 9 and all(len(n) <= 52 and n[0].isalnum() for n in names)
    assert derived_name("r" * 63, "-worker").endswith("-worker") and len(derived_name("r" * 63, "-worker")) == 52
    assert derived_name("r" * 45, "-worker") == "r" * 45 + "-worker"  # fits: unchanged


def test_a_required_successor_waits_for_the_node_its_predecessor_ran_on():
    step = op("DataProcess", {"dataset": {"name": "d"}, "processor": {"script": {"image": "b", "source": "x"}},
                              "runAfter": {"kind": "DataLoad", "name": "load", "affinityStrategy": {"policy": "Require"}}})
    early = reconcile_operation(step, OperationObserved(dataset_bound=True, predecessor_phase="Complete"), None, now=NOW)
    assert early.desired == [] and early.status.phase == "Pending"
    later = reconcile_operation(step, OperationObserved(dataset_bound=True, predecessor_phase="Complete",
                                                        predecessor_node="n2"), early.status, now=NOW)
    job = next(d for d in later.desired if d["kind"] == "Job")
    terms = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["n2"]


def test_a_job_is_given_its_operation_and_the_node_folders_it_reads_and_writes():
    import json

    from fluid_core.reconcilers.operation import MOUNTS_ENV, OPERATION_ENV

    mounts = ({"name": "in", "mountPoint": "local:///mnt/in"}, {"name": "s3", "mountPoint": "s3://bucket/x"})
    migrate = op("DataMigrate", {"from": {"dataset": {"name": "d"}}, "to": {"externalStorage": {"uri": "local:///mnt/out"}}})
    pod = job_manifest(migrate, None, mounts=mounts)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    given = json.loads(env[OPERATION_ENV])  # the pod needs no API access to learn what to do
    assert (given["kind"], given["metadata"]["name"]) == ("DataMigrate", "op")
    assert given["spec"]["to"]["externalStorage"]["uri"] == "local:///mnt/out"
    assert json.loads(env[MOUNTS_ENV]) == list(mounts)
    host = {v["hostPath"]["path"]: v for v in pod["volumes"] if "hostPath" in v}
    assert set(host) == {"/mnt/in", "/mnt/out"}  # s3:// is read directly
    mounted = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounted["/mnt/in"]["readOnly"] and not mounted["/mnt/out"]["readOnly"]
    assert host["/mnt/out"]["hostPath"]["type"] == "DirectoryOrCreate"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_a_job_writing_outside_the_allowed_host_folders_is_refused():
    migrate = op("DataMigrate", {"from": {"dataset": {"name": "d"}}, "to": {"externalStorage": {"uri": "local:///etc/x"}}})
    outcome = reconcile_operation(migrate, OperationObserved(dataset_bound=True), None, now=NOW)
    assert outcome.status.phase == "Failed" and outcome.desired == []
    assert "/etc/x" in outcome.status.conditions[-1].message


def test_a_failed_job_says_how_its_last_pod_ended():
    load = op("DataLoad", {"dataset": {"name": "d"}})
    job = JobObserved(failed=3, last_failure="PermissionError: [Errno 13] /mnt/out")
    outcome = reconcile_operation(load, OperationObserved(dataset_bound=True, job=job), {"phase": "Executing"},
                                  now=NOW)
    assert outcome.status.phase == "Failed"
    message = next(c.message for c in outcome.status.conditions if c.type == "Failed")
    assert message.endswith("its last pod's log ends with:\nPermissionError: [Errno 13] /mnt/out"), message


def test_a_jobs_node_is_where_it_succeeded_whatever_the_listing_order():
    from fluid_core.operator.operations import job_node

    def pod(name, node, phase, created):
        return {"metadata": {"name": name, "creationTimestamp": created}, "spec": {"nodeName": node},
                "status": {"phase": phase}}

    failed, retried = pod("j-a", "n1", "Failed", "2026-01-01T00:00:01Z"), pod("j-b", "n2", "Succeeded", "2026-01-01T00:00:09Z")
    assert job_node([failed, retried]) == job_node([retried, failed]) == "n2"
    running = pod("j-c", "n3", "Running", "2026-01-01T00:00:05Z")
    assert job_node([running, failed]) == job_node([failed, running]) == "n3", "no success yet: the newest pod"
    assert job_node([{"metadata": {"name": "j-d"}, "spec": {}, "status": {"phase": "Pending"}}]) is None
