"""Fluid's own schemas against the models: every field Fluid's CRDs have is accepted
(documents generated from the CRDs in ``fixtures/fluid-crds``), fields that are accepted
but not acted on are reported, and the statuses the reconcilers write validate against
Fluid's status schemas."""

from __future__ import annotations

import copy
import os
from typing import Any

import jsonschema
import pytest
import yaml

from crd_schema import as_jsonschema
from fluid_core.models import parse
from fluid_core.models.base import unapplied_fields

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "fluid-crds")
OPERATIONS = {"DataLoad": "dataloads", "DataMigrate": "datamigrates", "DataBackup": "databackups",
              "DataProcess": "dataprocesses"}

#: Values for string fields where "x" is not valid, by the end of their path.
STRINGS = {
    "namespace": "default", "path": "/x", "mountPath": "/data", "subPath": "sub", "uri": "local:///tmp/x",
    "schedule": "*/5 * * * *", "apiVersion": "data.fluid.io/v1alpha1", "backupPath": "local:///tmp/backup",
    "affinityStrategy.policy": "Require", "source": "echo hello", "command[]": "bash", "runtimeType": "vineyard",
    "imagePullPolicy": "IfNotPresent", "accessModes[]": "ReadOnlyMany", "runtimes[].category": "Accelerate",
    "runtimes[].type": "vineyard", "endpoint.uri": "http://etcd:2379", "levels[].high": "0.9",
    "levels[].low": "0.5", "cleanPolicy": "OnRuntimeDeleted", "networkMode": "HostNetwork",
    "levels[].mediumtype": "MEM", "levels[].volumeType": "emptyDir", "quota": "1Gi", "placement": "Exclusive",
    "mountPoint": "local:///srv/data", "quotaList": "1Gi,2Gi",
}
#: Keys of Fluid's port maps (any other key is refused with its path).
PORTS = {"master.ports": ("client", "peer"), "worker.ports": ("rpc", "exporter")}


def fluid_schema(plural: str) -> dict[str, Any]:
    with open(os.path.join(FIXTURES, f"data.fluid.io_{plural}.yaml")) as handle:
        crd = yaml.safe_load(handle)
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def example(schema: dict[str, Any], path: str = "") -> Any:
    """A value for ``schema`` with every property filled, one item per array."""
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("x-kubernetes-int-or-string"):
        return "1Gi" if path.endswith("quota") else "1"
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if "properties" in schema:
            return {name: example(sub, f"{path}.{name}" if path else name)
                    for name, sub in schema["properties"].items()}
        if isinstance(schema.get("additionalProperties"), dict):
            keys = PORTS.get(path, ("key",))
            return {key: 1000 + index for index, key in enumerate(keys)} if path in PORTS else {
                "key": example(schema["additionalProperties"], path + "{}")}
        return {}
    if kind == "array":
        return [example(schema.get("items", {}), path + "[]")]
    if kind == "integer":
        return 1
    if kind == "boolean":
        return True
    if kind == "number":
        return 1.5
    for suffix, value in sorted(STRINGS.items(), key=lambda item: -len(item[0])):  # the most specific first
        if path.endswith(suffix):
            return value
    return "x"


def fluid_document(kind: str) -> dict[str, Any]:
    """A document of ``kind`` using every field of Fluid's spec schema."""
    spec = example(fluid_schema(OPERATIONS[kind])["properties"]["spec"], "")
    spec["runAfter"]["kind"] = "DataLoad"
    spec["runAfter"]["affinityStrategy"]["dependOn"]["kind"] = "DataLoad"
    return {"apiVersion": "data.fluid.io/v1alpha1", "kind": kind, "metadata": {"name": "every-field"},
            "spec": spec}


def variants(kind: str) -> list[dict[str, Any]]:
    """Fluid's every-field document, split where Fluid itself wants one of two sides."""
    whole = fluid_document(kind)
    if kind == "DataMigrate":
        out = []
        for dataset_side, storage_side in (("from", "to"), ("to", "from")):
            one = copy.deepcopy(whole)
            del one["spec"][dataset_side]["externalStorage"]
            del one["spec"][storage_side]["dataset"]
            out.append(one)
        return out
    if kind == "DataProcess":
        script, job = copy.deepcopy(whole), copy.deepcopy(whole)
        del script["spec"]["processor"]["job"]
        del job["spec"]["processor"]["script"]
        return [script, job]
    return [whole]


@pytest.mark.parametrize("kind", list(OPERATIONS))
def test_every_field_of_fluids_operations_is_accepted(kind):
    for document in variants(kind):
        resource = parse(document)
        kept = resource.model_dump(by_alias=True, exclude_none=True, mode="json")["spec"]
        for field in document["spec"]:
            assert field in kept, f"{kind}: spec.{field} was dropped"


@pytest.mark.parametrize("kind", list(OPERATIONS))
def test_fluids_documents_validate_against_fluids_crds(kind):
    """The generator itself makes documents Fluid accepts (else the test above proves little)."""
    schema = as_jsonschema(fluid_schema(OPERATIONS[kind]))
    for document in variants(kind):
        jsonschema.validate(document, schema)


def test_fields_not_acted_on_are_reported_with_their_paths():
    load = parse(fluid_document("DataLoad"))
    local = dict(unapplied_fields(load.spec, "local", "spec"))
    assert {"spec.tolerations", "spec.schedulerName", "spec.affinity", "spec.resources",
            "spec.podMetadata"} <= set(local)
    assert "spec.target[0].replicas" not in local  # copies on further nodes, in both modes
    assert unapplied_fields(load.spec, "kubernetes", "spec") == []
    migrate = parse(variants("DataMigrate")[0])
    assert {"spec.parallelOptions", "spec.block", "spec.runtimeType", "spec.to.externalStorage.encryptOptions"} <= {
        p for p, _ in unapplied_fields(migrate.spec, "kubernetes", "spec")}
    plain = parse({"apiVersion": "data.fluid.io/v1alpha1", "kind": "DataLoad", "metadata": {"name": "plain"},
                   "spec": {"dataset": {"name": "d"}}})
    assert unapplied_fields(plain.spec, "local", "spec") == []


def test_fluids_shapes_mean_the_same():
    migrate = parse(variants("DataMigrate")[1])  # the dataset is the "to" side
    assert migrate.spec.dataset.name == "x"
    backup = parse({"apiVersion": "data.fluid.io/v1alpha1", "kind": "DataBackup", "metadata": {"name": "b"},
                    "spec": {"dataset": "imagenet", "backupPath": "local:///tmp/b"}})
    assert backup.spec.dataset.name == "imagenet"
    load = parse({"apiVersion": "data.fluid.io/v1alpha1", "kind": "DataLoad", "metadata": {"name": "all"},
                  "spec": {"dataset": {"name": "d"}}})
    assert load.spec.target == []  # Fluid: no target means the whole dataset
    runtime = parse({"apiVersion": "data.fluid.io/v1alpha1", "kind": "VineyardRuntime", "metadata": {"name": "r"},
                     "spec": {"tieredstore": {"levels": [{"mediumtype": "MEM", "quota": 1 << 30}]}}})
    assert runtime.spec.memory_quota() == str(1 << 30)  # an integer quota is bytes, as in Kubernetes
    with pytest.raises(Exception, match="not the dataset in from/to"):
        parse({**variants("DataMigrate")[0], "spec": {**variants("DataMigrate")[0]["spec"],
                                                      "dataset": {"name": "other"}}})


def _status_schema(kind: str) -> dict[str, Any]:
    return as_jsonschema(fluid_schema(OPERATIONS[kind])["properties"]["status"])


def test_operation_statuses_validate_against_fluids_status_schema():
    from fluid_core.reconcilers.operation import (
        JobObserved,
        OperationObserved,
        invalid_operation_status,
        reconcile_operation,
    )

    now = "2026-01-01T00:01:00Z"
    load = parse({"apiVersion": "data.fluid.io/v1alpha1", "kind": "DataLoad",
                  "metadata": {"name": "l", "creationTimestamp": "2026-01-01T00:00:00Z"},
                  "spec": {"dataset": {"name": "d"}, "runAfter": {"kind": "DataProcess", "name": "p"}}})
    cases = {
        "Pending": OperationObserved(dataset_bound=False),
        "Executing": OperationObserved(dataset_bound=True, predecessor_phase="Complete", job=JobObserved(active=1)),
        "Complete": OperationObserved(dataset_bound=True, predecessor_phase="Complete", job=JobObserved(
            succeeded=1, start_time="2026-01-01T00:00:10Z", completion_time="2026-01-01T00:00:40Z")),
        "Failed": OperationObserved(dataset_bound=True, predecessor_phase="Failed"),
    }
    schema = _status_schema("DataLoad")
    for phase, observed in cases.items():
        status = reconcile_operation(load, observed, None, now=now).status.to_dict()  # as patched
        assert status["phase"] == phase
        jsonschema.validate(status, schema)
    assert reconcile_operation(load, cases["Executing"], None, now=now).status.duration == "Unfinished"
    assert reconcile_operation(load, cases["Complete"], None, now=now).status.duration == "30s"
    invalid = invalid_operation_status({"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}},
                                       "spec.policy: bad", now).to_dict()
    assert invalid["phase"] == "Failed" and invalid["duration"] == "60s"
    for kind in OPERATIONS:
        jsonschema.validate(invalid, _status_schema(kind))


def test_the_operator_and_the_local_runner_say_what_they_do_not_apply():
    from fluid_core.reconcilers.operation import OperationObserved, reconcile_operation

    document = variants("DataMigrate")[0]
    load = parse({**document, "spec": {**document["spec"], "parallelOptions": {"threads": "4"},
                                       "tolerations": [{"key": "k", "operator": "Exists"}]}})
    out = reconcile_operation(load, OperationObserved(dataset_bound=False), None, now="2026-01-01T00:00:00Z")
    assert "spec.parallelOptions" in out.status.infos["notApplied"]
    assert "tolerations" not in out.status.infos["notApplied"]  # a Job's pod carries them
    assert [e[1] for e in out.events] == ["NotApplied"]
    again = reconcile_operation(load, OperationObserved(dataset_bound=False), out.status, now="2026-01-01T00:00:01Z")
    assert again.events == []  # said once
    jsonschema.validate(out.status.to_dict(), _status_schema("DataMigrate"))


ALL_KINDS = {**OPERATIONS, "Dataset": "datasets", "VineyardRuntime": "vineyardruntimes"}


@pytest.mark.parametrize("kind", list(ALL_KINDS))
def test_crds_have_fluids_names_columns_and_subresources(kind):
    from fluid_core.crds import all_crds

    with open(os.path.join(FIXTURES, f"data.fluid.io_{ALL_KINDS[kind]}.yaml")) as handle:
        fluid = yaml.safe_load(handle)["spec"]
    ours = all_crds()[f"data.fluid.io_{ALL_KINDS[kind]}.yaml"]["spec"]
    assert set(fluid["names"].get("shortNames", [])) <= set(ours["names"].get("shortNames", []))
    assert ours["names"]["plural"] == fluid["names"]["plural"] and ours["names"]["kind"] == kind
    fluid_version, our_version = fluid["versions"][0], ours["versions"][0]
    columns = [(c["name"], c["jsonPath"]) for c in our_version["additionalPrinterColumns"]]
    assert [(c["name"], c["jsonPath"]) for c in fluid_version["additionalPrinterColumns"]] == [
        c for c in columns if c[0] in {f["name"] for f in fluid_version["additionalPrinterColumns"]}]
    assert our_version["subresources"] == fluid_version["subresources"]


def test_runtime_status_validates_against_fluids_and_scales():
    from fluid_core.models import parse as parse_resource
    from fluid_core.reconcilers.engine import VineyardEngine
    from fluid_core.reconcilers.observed import RuntimeObserved, Workload
    from fluid_core.reconcilers.runtime import reconcile_runtime
    from fluid_core.reconcilers.translate import kube_runtime

    runtime = parse_resource({"apiVersion": "data.fluid.io/v1alpha1", "kind": "VineyardRuntime",
                              "metadata": {"name": "demo", "namespace": "ns"}, "spec": {"replicas": 2}})
    engine = VineyardEngine(kube_runtime(runtime))
    schema = as_jsonschema(fluid_schema("vineyardruntimes")["properties"]["status"])
    for observed in (RuntimeObserved(dataset_exists=False),
                     RuntimeObserved(dataset_exists=True),
                     RuntimeObserved(dataset_exists=True, master=Workload(1, 1, 1), workers=Workload(2, 1, 2),
                                     bridge=Workload(2, 2, 2))):
        status = reconcile_runtime(engine, observed, None, now="2026-01-01T00:00:00Z").status.to_dict()  # as patched
        jsonschema.validate(status, schema)
    assert status["currentWorkerNumberScheduled"] == 2 and status["workerNumberReady"] == 1
    assert status["selector"] == "app.kubernetes.io/instance=demo,app.kubernetes.io/component=worker,app.kubernetes.io/name=vineyard"


@pytest.mark.parametrize("kind,plural", [("Dataset", "datasets"), ("VineyardRuntime", "vineyardruntimes")])
def test_every_field_of_fluids_dataset_and_runtime_is_accepted(kind, plural):
    spec = example(fluid_schema(plural)["properties"]["spec"], "")
    document = {"apiVersion": "data.fluid.io/v1alpha1", "kind": kind, "metadata": {"name": "every-field"},
                "spec": spec}
    jsonschema.validate(document, as_jsonschema(fluid_schema(plural)))
    resource = parse(document)
    kept = resource.model_dump(by_alias=True, exclude_none=True, mode="json")["spec"]
    assert set(spec) <= set(kept)
    assert unapplied_fields(resource.spec, "kubernetes", "spec")  # what is not used is said
    if kind == "VineyardRuntime":
        assert resource.spec.worker.ports.metrics == 1001  # Fluid's "exporter" port is the metrics port


def test_a_status_another_writer_left_is_read_for_what_it_says():
    """Fluid's controller writes conditions with ``lastProbeTime``, another version may
    write a field this one reads differently: the phase still counts (an operation Fluid
    completed is not run again)."""
    from fluid_core.models.operations import OperationStatus

    status = OperationStatus.read({
        "phase": "Complete", "duration": 30, "lastScheduleTime": "2026-01-01T00:00:00Z",
        "conditions": [{"type": "Complete", "status": "True", "reason": "JobSucceeded",
                        "lastProbeTime": "2026-01-01T00:00:30Z", "lastTransitionTime": "2026-01-01T00:00:30Z"}],
    })
    assert status.phase == "Complete" and status.duration is None  # a number where a string belongs: left out
    assert [c.reason for c in status.conditions] == ["JobSucceeded"]
