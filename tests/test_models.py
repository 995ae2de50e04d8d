"""API models: defaults, validation with field paths, and the CRDs generated from them."""

from __future__ import annotations

import copy
import os

import jsonschema
import pytest
import yaml

from crd_schema import as_jsonschema
from fluid_core.crds import all_crds, openapi_schema
from fluid_core.errors import InvalidResource
from fluid_core.models import KINDS, parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def doc(kind: str, spec: dict | None = None, name: str = "demo") -> dict:
    body = {"apiVersion": "data.fluid.io/v1alpha1", "kind": kind, "metadata": {"name": name}}
    if spec is not None:
        body["spec"] = spec
    return body


def test_runtime_defaults_follow_fluid():
    runtime = parse(doc("VineyardRuntime", {}))
    spec = runtime.to_dict()["spec"]
    assert spec["replicas"] == 1
    assert spec["master"]["ports"] == {"client": 2379, "peer": 2380}
    assert spec["worker"]["ports"] == {"rpc": 9600, "metrics": 9144}
    assert spec["fuse"]["cleanPolicy"] == "OnRuntimeDeleted"
    assert runtime.namespace == "default"


def test_dataset_defaults():
    dataset = parse(doc("Dataset", {}))
    assert dataset.spec.access_modes == ["ReadOnlyMany"]
    assert dataset.spec.placement == "Exclusive"


@pytest.mark.parametrize(
    ("kind", "spec", "name", "path", "message"),
    [
        ("VineyardRuntime", {"replicas": 0}, "demo", "spec.replicas", "greater than or equal to 1"),
        ("VineyardRuntime", {"tieredstore": {"levels": [{"mediumtype": "MEM", "quota": "2Gx"}]}},
         "demo", "spec.tieredstore.levels[0].quota", "not a size"),
        ("VineyardRuntime", {"tieredstore": {"levels": [{"mediumtype": "MEM", "quota": "1Mi"}]}},
         "demo", "spec", "below the 16Mi"),
        ("VineyardRuntime", {"tieredstore": {"levels": [{"mediumtype": "SSD", "quota": "1Gi"}]}},
         "demo", "spec.tieredstore.levels[0]", "needs a path"),
        ("VineyardRuntime", {"master": {"replicas": 2}}, "demo", "spec.master", "odd number"),
        ("VineyardRuntime", {"master": {"endpoint": {"uri": "etcd:2379"}}}, "demo",
         "spec.master.endpoint.uri", "pattern"),
        ("VineyardRuntime", {"unknown": 1}, "demo", "spec.unknown",
         "unknown field `unknown`; the fields here are: disablePrometheus, fuse, master, podMetadata, replicas, "
         "tieredstore, volumes, worker"),
        ("VineyardRuntime", {"replica": 2}, "demo", "spec.replica", "unknown field `replica`; did you mean `replicas`?"),
        ("VineyardRuntime", {"worker": {"nodeSelektor": {}}}, "demo", "spec.worker.nodeSelektor",
         "did you mean `nodeSelector`?"),
        ("VineyardRuntime", {"tieredstore": {"levels": [{"mediumtype": "MEM", "quota": "1GB"}]}},
         "demo", "spec.tieredstore.levels[0].quota", "'1GB' is not a Kubernetes quantity; write 1G (1 x 10^9 bytes)"),
        ("DataProcess", {"dataset": {"name": "d"}, "run_afte": {}, "processor": {"function": "m:f"}}, "demo",
         "spec.run_afte", "did you mean `runAfter`?"),
        ("VineyardRuntime", {}, "Bad_Name", "metadata.name", "DNS-1035"),
        ("Dataset", {"accessModes": ["Sometimes"]}, "demo", "spec.accessModes[0]", "Input should be"),
        ("DataProcess", {"dataset": {"name": "d"}, "processor": {}}, "demo", "spec.processor",
         "exactly one of processor.script, processor.job or processor.function"),
        ("DataLoad", {"dataset": {"name": "d"}, "target": [{"path": "/x"}], "policy": "Cron"},
         "demo", "spec", "needs a schedule"),
        ("DataLoad", {"dataset": {"name": "d"}, "target": [{"path": "/x"}], "policy": "Cron",
                      "schedule": "every day"}, "demo", "spec.schedule", "not a cron expression"),
        ("DataLoad", {"dataset": {"name": "d"}, "target": [{"replicas": 2}]}, "demo", "spec.target[0].path", "Field required"),
        ("DataMigrate", {"dataset": {"name": "d"}, "from": {"externalStorage": {"uri": "file:///a"}},
                         "to": {"externalStorage": {"uri": "file:///b"}}}, "demo", "spec",
         "exactly one of from/to must be a dataset"),
        ("DataBackup", {"dataset": {"name": "d"}, "backupPath": "/b",
                        "runAfter": {"kind": "DataSomething", "name": "x"}}, "demo",
         "spec.runAfter.kind", "Input should be"),
    ],
)
def test_invalid_resources_name_the_field(kind, spec, name, path, message):
    with pytest.raises(InvalidResource) as info:
        parse(doc(kind, spec, name))
    assert any(p == path and message in m for p, m in info.value.problems), info.value.problems


def test_an_unknown_field_leaves_the_other_problems_as_they_are():
    with pytest.raises(InvalidResource) as info:
        parse({**doc("VineyardRuntime", {"replicas": 0, "replica": 2}), "spce": {}})
    assert sorted(info.value.problems) == [
        ("spce", "unknown field `spce`; did you mean `spec`?"),
        ("spec.replica", "unknown field `replica`; did you mean `replicas`?"),
        ("spec.replicas", "Input should be greater than or equal to 1"),
    ]


def test_wrong_api_version_and_kind():
    with pytest.raises(InvalidResource, match="apiVersion: must be data.fluid.io/v1alpha1"):
        parse({**doc("Dataset", {}), "apiVersion": "data.fluid.io/v1"})
    with pytest.raises(InvalidResource, match="kind: must be one of"):
        parse(doc("AlluxioRuntime", {}))


def test_crds_in_the_repository_are_current():
    for filename, generated in all_crds().items():
        path = os.path.join(ROOT, "crds", filename)
        assert os.path.exists(path), f"{path} missing: run `fluidv crds`"
        with open(path) as handle:
            committed = yaml.safe_load(handle)
        assert committed == generated, f"{filename} is stale: run `fluidv crds`"


def test_crd_names_columns_and_status_subresource():
    crds = {c["spec"]["names"]["kind"]: c for c in all_crds().values()}
    assert set(crds) == set(KINDS)
    runtime = crds["VineyardRuntime"]
    assert runtime["spec"]["names"]["shortNames"] == ["v6d"]
    version = runtime["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    assert {"Master Phase", "Worker Phase", "Ready Workers", "Age"} <= {
        c["name"] for c in version["additionalPrinterColumns"]}


def _validate_with_crd(document: dict) -> None:
    schema = openapi_schema(KINDS[document["kind"]])
    jsonschema.validate(document, as_jsonschema(schema))


def test_examples_validate_against_the_crds_and_the_models():
    with open(os.path.join(ROOT, "examples", "dataset-runtime.yaml")) as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d]
    assert {d["kind"] for d in documents} == {"Dataset", "VineyardRuntime"}
    for document in documents:
        _validate_with_crd(document)
        parse(document)
    with open(os.path.join(ROOT, "examples", "pipeline-flow.yaml")) as handle:
        for document in (d for d in yaml.safe_load_all(handle) if d):
            _validate_with_crd(document)
            parse(document)


def test_crd_schema_rejects_what_the_models_reject():
    bad = doc("VineyardRuntime", {"replicas": 0, "tieredstore": {"levels": [{"mediumtype": "RAM"}]}})
    with pytest.raises(jsonschema.ValidationError):
        _validate_with_crd(bad)
    for size in ("2Gx", "1GB", "512 Mi"):  # the CRDs keep Kubernetes' grammar, as the models do
        quota = doc("VineyardRuntime", {"tieredstore": {"levels": [{"mediumtype": "MEM", "quota": size}]}})
        with pytest.raises(jsonschema.ValidationError):
            _validate_with_crd(copy.deepcopy(quota))
        with pytest.raises(InvalidResource):
            parse(quota)


def test_a_status_written_by_another_operator_version_still_parses():
    """An upgrade or a rollback meets statuses with fields it does not know: the resource
    stays valid (a spec's unknown field is still an error)."""
    from fluid_core.models import VineyardRuntime

    body = {"apiVersion": "data.fluid.io/v1alpha1", "kind": "VineyardRuntime",
            "metadata": {"name": "demo", "namespace": "default"}, "spec": {"replicas": 1},
            "status": {"masterPhase": "Ready", "fieldOfALaterVersion": {"x": 1}}}
    runtime = VineyardRuntime.model_validate(body)
    assert runtime.status is not None and runtime.status.master_phase == "Ready"
