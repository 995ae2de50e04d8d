"""Placement: dataset tiers, object locality, replica spreading, the patch's properties."""

from __future__ import annotations

import copy

import jsonpatch
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluid_core.placement import (
    ClusterView,
    InvalidPlacementConfig,
    InvalidView,
    PlacementConfig,
    PlacementRequest,
    mutate,
    rank_nodes,
)
from fluid_core.placement.locations import read_locations
from fluid_core.placement.terms import pick_holder

ZONE, REGION, RACK = "topology.kubernetes.io/zone", "topology.kubernetes.io/region", "topology.fluid.io/rack"

VIEW = ClusterView.from_dict({
    "nodes": {
        "n1": {ZONE: "a", REGION: "r1", RACK: "k1"},
        "n2": {ZONE: "b", REGION: "r1", RACK: "k2"},
        "n3": {ZONE: "c", REGION: "r2"},
        "n4": {ZONE: "a", REGION: "r1", RACK: "k1"},
    },
    "datasets": {"default/demo": ["n1", "n2"], "default/other": ["n3"]},
    "objects": {"default/demo/features": {"n2": 300}, "default/demo/labels": {"n2": 10, "n1": 50},
                "default/demo/sharded": {"n1": 300, "n2": 100}},
})


def pod(name: str = "p", claims: tuple[str, ...] = ("demo",), labels: dict | None = None,
        annotations: dict | None = None, affinity: dict | None = None) -> dict:
    spec: dict = {
        "containers": [{"name": "main", "image": "busybox",
                        "volumeMounts": [{"name": f"v-{c}", "mountPath": f"/data/{c}"} for c in claims]}],
        "volumes": [{"name": f"v-{c}", "persistentVolumeClaim": {"claimName": c}} for c in claims],
    }
    if affinity is not None:
        spec["affinity"] = affinity
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": spec}


def applied(body: dict, view: ClusterView = VIEW, config: PlacementConfig | None = None) -> dict:
    return jsonpatch.apply_patch(body, mutate(body, view, config))


def node_affinity(body: dict) -> dict:
    return body["spec"]["affinity"]["nodeAffinity"]


def test_dataset_tiers_prefer_cache_nodes_then_their_rack_zone_region():
    preferred = node_affinity(applied(pod()))["preferredDuringSchedulingIgnoredDuringExecution"]
    as_pairs = [(t["weight"], t["preference"]["matchExpressions"][0]["key"],
                 t["preference"]["matchExpressions"][0]["values"]) for t in preferred]
    assert as_pairs == [(100, "fluid.io/s-default-demo", ["true"]), (75, RACK, ["k1", "k2"]),
                        (50, ZONE, ["a", "b"]), (20, REGION, ["r1"])]  # only zones that hold caches


def test_sched_required_label_makes_the_node_tier_required():
    body = applied(pod(labels={"fluid.io/dataset.demo.sched": "required"}))
    required = node_affinity(body)["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert required == [{"matchExpressions": [{"key": "fluid.io/s-default-demo", "operator": "In",
                                               "values": ["true"]}]}]
    keys = [t["preference"]["matchExpressions"][0]["key"]
            for t in node_affinity(body)["preferredDuringSchedulingIgnoredDuringExecution"]]
    assert "fluid.io/s-default-demo" not in keys
    request = PlacementRequest(datasets=("demo",), required=frozenset({"demo"}))
    assert [n for n, _ in rank_nodes(request, VIEW)] == ["n1", "n2"]


def test_existing_affinity_is_kept_and_required_joins_every_term():
    mine = {"weight": 7, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}
    terms = [{"matchExpressions": [{"key": "arch", "operator": "In", "values": ["amd64"]}]},
             {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]}]
    original = pod(labels={"fluid.io/dataset.demo.sched": "required"}, affinity={
        "podAntiAffinity": {"x": 1},
        "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [mine],
                         "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}})
    body = applied(copy.deepcopy(original))
    aff = node_affinity(body)
    assert body["spec"]["affinity"]["podAntiAffinity"] == {"x": 1}
    assert aff["preferredDuringSchedulingIgnoredDuringExecution"][0] == mine
    got = aff["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert got[0]["matchExpressions"][0] == terms[0]["matchExpressions"][0]
    assert got[1]["matchFields"] == terms[1]["matchFields"]
    assert all({"key": "fluid.io/s-default-demo", "operator": "In", "values": ["true"]}
               in t["matchExpressions"] for t in got)
    assert mutate(body, VIEW) == []


def test_untouched_pods():
    assert mutate(pod(labels={"fluid.io/enable-injection": "false"}), VIEW) == []
    assert mutate(pod(claims=()), VIEW) == []
    assert mutate(pod(claims=("not-a-dataset",)), VIEW) == []


def test_objects_pull_the_pod_to_the_node_holding_most_bytes():
    body = applied(pod(annotations={"data.fluid.io/consumes": "features, labels"}))
    preferred = node_affinity(body)["preferredDuringSchedulingIgnoredDuringExecution"]
    assert {"weight": 100, "preference": {"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["n2"]}]}} in preferred
    request = PlacementRequest(datasets=("demo",), consumes=("features", "labels"))
    ranked = rank_nodes(request, VIEW)
    assert ranked[0][0] == "n2"
    assert dict(ranked)["n3"] == 0
    # full keys work without mounting the dataset
    assert rank_nodes(PlacementRequest(consumes=("default/demo/labels",)), VIEW)[0][0] == "n1"


def test_replicas_spread_in_proportion_to_bytes():
    holding = {"n1": 300, "n2": 100}
    assert [pick_holder(holding, rank, 4) for rank in range(4)] == ["n1", "n1", "n1", "n2"]
    assert [pick_holder({"n1": 200, "n2": 200}, rank, 2) for rank in range(2)] == ["n1", "n2"]
    assert pick_holder(holding, None, None) == "n1"
    assert pick_holder({}, 0, 3) is None
    ranks = [rank_nodes(PlacementRequest(consumes=("default/demo/sharded",), rank=r, replicas=4), VIEW)[0][0]
             for r in range(4)]
    assert ranks == ["n1", "n1", "n1", "n2"]
    # a replica placed by bytes opts out of the scheduler's default spreading, once
    replica = pod(labels={"apps.kubernetes.io/pod-index": "3"},
                  annotations={"data.fluid.io/consumes": "sharded", "data.fluid.io/replicas": "4"})
    placed = applied(replica)
    assert placed["spec"]["topologySpreadConstraints"] == [{
        "maxSkew": 4, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}]
    assert mutate(placed, VIEW) == []
    own = [{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule"}]
    replica["spec"]["topologySpreadConstraints"] = own
    assert applied(replica)["spec"]["topologySpreadConstraints"] == own  # the pod's own are kept
    assert "topologySpreadConstraints" not in applied(pod(annotations={"data.fluid.io/consumes": "sharded"}))["spec"]


def test_vineyard_config_is_injected_where_the_dataset_is_mounted():
    body = applied(pod())
    assert body["spec"]["containers"][0]["env"] == [
        {"name": "VINEYARD_CONFIG", "value": "/data/demo/vineyard-config.yaml"}]
    own = pod()
    own["spec"]["containers"][0]["env"] = [{"name": "VINEYARD_CONFIG", "value": "/mine.yaml"}]
    assert applied(own)["spec"]["containers"][0]["env"] == [{"name": "VINEYARD_CONFIG", "value": "/mine.yaml"}]


def test_config_tiers_and_bad_settings():
    config = PlacementConfig.from_dict({"tiers": [{"label": "fluid.io/node", "weight": 90},
                                                  {"label": ZONE, "weight": 40}]})
    weights = [t["weight"] for t in node_affinity(applied(pod(), config=config))[
        "preferredDuringSchedulingIgnoredDuringExecution"]]
    assert weights == [90, 40]
    with pytest.raises(InvalidPlacementConfig, match=r"tiers\[0\].weight"):
        PlacementConfig.from_dict({"tiers": [{"label": ZONE, "weight": 500}]})
    with pytest.raises(InvalidPlacementConfig, match="unknown"):
        PlacementConfig.from_dict({"tier": []})
    with pytest.raises(InvalidView, match="namespace/name"):
        ClusterView.from_dict({"datasets": {"demo": ["n1"]}})


# -- properties ---------------------------------------------------------------------

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=90).map(
    lambda s: "x" + s.strip("-") + "x")


@st.composite
def scenarios(draw):
    nodes = draw(st.lists(st.sampled_from([f"n{i}" for i in range(8)]), min_size=1, max_size=8, unique=True))
    zones = {n: {ZONE: draw(st.sampled_from(["a", "b", "c"])), REGION: "r"} for n in nodes}
    datasets = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    view = ClusterView.from_dict({
        "nodes": zones,
        "datasets": {f"default/{d}": draw(st.lists(st.sampled_from(nodes), unique=True)) for d in datasets},
        "objects": {f"default/{datasets[0]}/k{i}": {draw(st.sampled_from(nodes)): draw(st.integers(1, 10**9))}
                    for i in range(draw(st.integers(0, 3)))},
    })
    required = {f"fluid.io/dataset.{d}.sched": "required" for d in datasets if draw(st.booleans())}
    existing = draw(st.sampled_from([None, {}, {"nodeAffinity": {}}, {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "k", "operator": "Exists"}]}}],
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}]}}}]))
    body = pod(claims=tuple(datasets), labels=required, affinity=copy.deepcopy(existing),
               annotations={"data.fluid.io/consumes": "k0,k1,k2", "data.fluid.io/replicas": "3"})
    return view, body, existing


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_mutate_properties(scenario):
    view, body, existing = scenario
    once = jsonpatch.apply_patch(body, mutate(body, view))
    assert mutate(once, view) == []  # idempotent
    aff = (once["spec"].get("affinity") or {}).get("nodeAffinity") or {}
    old = (existing or {}).get("nodeAffinity") or {}
    for term in old.get("preferredDuringSchedulingIgnoredDuringExecution", []):
        assert term in aff["preferredDuringSchedulingIgnoredDuringExecution"]  # nothing dropped
    old_required = (old.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms", [])
    new_required = (aff.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms", [])
    for before, after in zip(old_required, new_required):
        assert all(e in after.get("matchExpressions", []) for e in before.get("matchExpressions", []))
    for term in aff.get("preferredDuringSchedulingIgnoredDuringExecution", []):
        assert 1 <= term["weight"] <= 100
        for expression in term["preference"].get("matchExpressions", []):
            assert len(expression["key"].split("/")[-1]) <= 63
            assert all(len(v) <= 63 for v in expression.get("values", []))
    wants_required = any(v == "required" for v in body["metadata"]["labels"].values())
    assert bool(new_required) == (wants_required or bool(old_required))


# -- object locations from a real cluster's etcd ------------------------------------

def test_locations_read_from_a_local_clusters_etcd(shared_cluster):
    import objects

    nodes = shared_cluster.nodes
    first, second = (objects.connect(nodes[i].socket) for i in (0, 1))
    try:
        first.put(np.zeros(1000, dtype="int64"), name="default/places/on-first", replace=True)
        second.put(np.zeros(500, dtype="int32"), name="default/places/on-second", replace=True)
        located = read_locations(shared_cluster.etcd_endpoint)
        assert located["default/places/on-first"] == {nodes[0].name: 8000}
        assert located["default/places/on-second"] == {nodes[1].name: 2000}
        view = ClusterView.from_dict({"nodes": {n.name: n.labels for n in nodes}, "objects": located})
        request = PlacementRequest(consumes=("default/places/on-second",))
        assert rank_nodes(request, view)[0] == (nodes[1].name, 100 + 50 + 20)
    finally:
        first.delete_many(prefix="default/places/")
        first.close()
        second.close()


def test_flow_affinity_follows_the_predecessor():
    from fluid_core.placement.flow import follow

    view = ClusterView.from_dict({"nodes": {
        "n1": {"kubernetes.io/hostname": "n1", ZONE: "a"}, "n2": {"kubernetes.io/hostname": "n2", ZONE: "a"},
        "n3": {"kubernetes.io/hostname": "n3", ZONE: "b"}}})
    same_node = follow({"policy": "Require"}, "n2", view)
    assert [n for n, _ in rank_nodes(PlacementRequest(affinity=same_node), view)] == ["n2"]
    same_zone = follow({"policy": "Require", "requires": [{"name": ZONE}]}, "n1", view)
    assert sorted(n for n, _ in rank_nodes(PlacementRequest(affinity=same_zone), view)) == ["n1", "n2"]
    preferred = follow({"policy": "Prefer"}, "n3", view)
    ranked = rank_nodes(PlacementRequest(affinity=preferred), view)
    assert ranked[0] == ("n3", 100) and len(ranked) == 3
    assert follow(None, "n1", view) is None


def test_locations_honour_the_clusters_etcd_prefix_and_skip_foreign_entries(shared_cluster):
    """Another cluster in the same etcd (its own prefix) is not mixed in, and an entry
    this version cannot read is skipped rather than failing the read."""
    from objects.directory import Directory, Entry
    from vineyard_runtime.etcd_client import EtcdClient

    etcd = EtcdClient(shared_cluster.etcd_endpoint)
    other = Directory(etcd, "/another-cluster")
    entry = Entry(id="o00000000000000ff", typename="vineyard::Tensor", nbytes=64, instance_id=7, node="far-node")
    assert other.create("default/ds/x", entry) is not None
    etcd.put(other.key("default/ds/broken"), "{not json")
    try:
        assert read_locations(shared_cluster.etcd_endpoint, etcd_prefix="/another-cluster") == {
            "default/ds/x": {"far-node": 64}}
        assert "default/ds/x" not in read_locations(shared_cluster.etcd_endpoint, etcd_prefix=shared_cluster.etcd_prefix)
    finally:
        etcd.delete_prefix("/another-cluster/")
