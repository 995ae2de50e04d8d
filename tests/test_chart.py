"""The Helm chart renders offline, lints clean, validates strictly, and references
only commands and resources that exist."""

from __future__ import annotations

import filecmp
import os

import helm_python
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from fluid_core.cli import cli
from fluid_core.models import KINDS
from fluid_core.kube import _BUILTIN

CHART = os.path.join(os.path.dirname(__file__), "..", "charts", "fluid-vineyard")
VARIANTS = {
    "default": {},
    "cert-manager": {"webhook": {"certManager": {"enabled": True}}},
    "cert-manager-issuer": {"webhook": {"certManager": {"enabled": True, "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}}},
    "no-webhook": {"webhook": {"enabled": False}, "networkPolicy": {"enabled": False}},
    "namespaced": {"operator": {"namespaces": ["team-a", "team-b"], "verbose": True}},
    "namespace-scoped": {"operator": {"namespaces": ["team-a", "team-b"]}, "rbac": {"scope": "namespace"},
                         "policy": {"allowedImages": ["registry.example.com/"], "podSecurity": "baseline"}},
}
NOT_BUILT_IN = {"Certificate", "Issuer"}  # cert-manager's kinds


def render(values: dict) -> list[dict]:
    rendered = helm_python.Chart.load(CHART).render(values, name="fv", namespace="fluid-system")
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_manifest_validates_strictly(variant, version):
    docs = render(VARIANTS[variant])
    assert docs
    for doc in docs:
        if doc["kind"] not in NOT_BUILT_IN:
            kubernetes_validate.validate(doc, version, strict=True)
    crds = [yaml.safe_load(c["data"]) for c in helm_python.Chart.load(CHART).crds]
    assert len(crds) == len(KINDS)
    for crd in crds:
        kubernetes_validate.validate(crd, version, strict=True)


def test_lint_is_clean():
    report = helm_python.lint(CHART, strict=True)
    assert report["errors"] == [] and report["messages"] == [], report


def test_the_crds_are_what_the_models_generate_now(tmp_path):
    """``crds/`` byte for byte against a fresh ``fluidv crds``: a model changed without
    regenerating fails here. The chart's ``crds/`` is a link to it (helm follows it, and
    ``helm package`` stores the files), so they are checked in one place."""
    fresh = tmp_path / "generated"
    result = CliRunner().invoke(cli, ["crds", "--out", str(fresh)])
    assert result.exit_code == 0, result.output
    names = sorted(os.listdir(fresh))
    assert len(names) == len(KINDS)
    checked_in = os.path.normpath(os.path.join(CHART, "..", "..", "crds"))
    assert os.path.realpath(os.path.join(CHART, "crds")) == os.path.realpath(checked_in)
    assert sorted(os.listdir(checked_in)) == names, f"{checked_in}: run `fluidv crds`"
    _, mismatch, errors = filecmp.cmpfiles(fresh, checked_in, names, shallow=False)
    assert not mismatch and not errors, f"{checked_in} is stale, run `fluidv crds`: {mismatch or errors}"


def test_values_schema_rejects_bad_values():
    with pytest.raises(helm_python.HelmError):
        render({"webhook": {"failurePolicy": "Sometimes"}})
    with pytest.raises(helm_python.HelmError):
        render({"placement": {"tiers": [{"label": "x", "weight": 500}]}})


def test_rbac_covers_exactly_what_the_operator_touches():
    role = next(d for d in render({}) if d["kind"] == "ClusterRole")
    granted = {(group, resource) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"]}
    used = set()
    for (api_version, _kind), (plural, _namespaced) in _BUILTIN.items():
        used.add((api_version.split("/")[0] if "/" in api_version else "", plural))
    used.discard(("", "events"))  # kopf posts events: granted as create only
    assert used <= granted, f"missing from the ClusterRole: {used - granted}"
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    assert not any("delete" in r["verbs"] for r in role["rules"] if "data.fluid.io" in r["apiGroups"])


def test_a_namespace_scoped_install_grants_namespaced_kinds_only_in_its_namespaces():
    docs = render(VARIANTS["namespace-scoped"])
    cluster_role = next(d for d in docs if d["kind"] == "ClusterRole")
    cluster_wide = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert cluster_wide == {"persistentvolumes", "nodes", "customresourcedefinitions"}
    roles = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "Role"}
    bindings = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    namespaced = {r for rule in roles["team-a"]["rules"] for r in rule["resources"]}
    assert {"jobs", "statefulsets", "dataprocesses", "configmaps", "events"} <= namespaced
    cluster_scope = next(d for d in render({}) if d["kind"] == "ClusterRole")
    assert {r for rule in cluster_scope["rules"] for r in rule["resources"]} == namespaced | cluster_wide | {
        "namespaces"}  # the same grants, only scoped
    with pytest.raises(helm_python.HelmError, match="needs operator.namespaces"):
        render({"rbac": {"scope": "namespace"}})


def test_the_policy_reaches_the_operator_as_its_policy_file():
    from fluid_core.reconcilers.policy import Policy

    docs = render(VARIANTS["namespace-scoped"])
    config = next(d for d in docs if d["kind"] == "ConfigMap" and "policy.yaml" in d["data"])
    policy = Policy.from_mapping(yaml.safe_load(config["data"]["policy.yaml"]))
    assert policy.allowed_images == ("registry.example.com/",) and policy.pod_security == "baseline"
    assert Policy.from_mapping(yaml.safe_load(next(d for d in render({}) if d["kind"] == "ConfigMap" and (
        "policy.yaml" in d["data"]))["data"]["policy.yaml"])) == Policy()  # the chart's defaults are the operator's
    command = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--policy=/etc/fluidv/policy.yaml" in command
    with pytest.raises(helm_python.HelmError):
        render({"policy": {"podSecurity": "lenient"}})


def _options(*command: str) -> str:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_every_referenced_entrypoint_exists():
    from fluid_core.models import parse
    from fluid_core.reconcilers.operation import job_manifest
    from fluid_core.reconcilers.render import render_objects

    deployment = next(d for d in render({}) if d["kind"] == "Deployment")
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["fluidv", "operator"]
    help_text = _options("operator")
    for arg in command[2:]:
        assert arg.split("=")[0] in help_text, arg
    objects = render_objects([
        parse({"apiVersion": "data.fluid.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "d"}, "spec": {}}),
        parse({"apiVersion": "data.fluid.io/v1alpha1", "kind": "VineyardRuntime", "metadata": {"name": "d"},
               "spec": {}})])
    bridge = next(o for o in objects if o["kind"] == "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    help_text = _options("bridge")
    assert bridge["command"][:2] == ["fluidv", "bridge"]
    for arg in bridge["command"][2:]:
        if arg.startswith("--"):
            assert arg in help_text, arg
    load = parse({"apiVersion": "data.fluid.io/v1alpha1", "kind": "DataLoad", "metadata": {"name": "l"},
                  "spec": {"dataset": {"name": "d"}, "target": [{"path": "/x"}]}})
    job_command = job_manifest(load, None)["spec"]["template"]["spec"]["containers"][0]["command"]
    assert job_command[:3] == ["fluidv", "op", "run"]
    assert "--namespace" in _options("op", "run")
    worker = next(o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "d-worker")
    assert worker["spec"]["template"]["spec"]["containers"][0]["command"][0].endswith("vineyardd")
