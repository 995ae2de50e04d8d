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
        "image": "python", "imageTag": "3.12", "command": ["python", "-c"], "source": "print(1)"}}}),
    op("DataProcess", {"dataset": {"name": "d"}, "processor": {"job": {"podSpec": {
        "containers": [{"name": "mine", "image": "busybox", "command": ["true"]}]}}}}),
    op("DataMigrate", {"dataset": {"name": "d"}, "policy": "Cron", "schedule": "0 * * * *",
                       "ttlSecondsAfterFinished": 60, "from": {"dataset": {"name": "d"}},
                       "to": {"externalStorage": {"uri": "s3://bucket/x"}}}),
]


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
@pytest.mark.parametrize("operation", OPS, ids=["load", "script", "job", "cron"])
def test_jobs_validate_strictly(operation, version):
    affinity = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}
    manifest = job_manifest(operation, affinity)
    kubernetes_validate.validate(manifest, version, strict=True)
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "u-1"


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
