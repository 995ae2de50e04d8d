"""Placement quality on 1,000 KWOK nodes: the share of consuming pods the real scheduler
puts on a node holding their inputs, with the operator's webhook and without it.

The inputs are real objects in a real local cluster's vineyardd nodes (node-0…node-3,
the runtime's external etcd is that cluster's); the control plane has 1,000 KWOK nodes
named node-0…node-999, so four of them hold data. Each pod consumes two objects
(``data.fluid.io/consumes``); the same pods are created in a namespace the webhook
sees and in one it does not."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from vineyard_runtime.local import LocalCluster
from vineyard_runtime.plumbing.ports import free_ports
from vineyard_runtime.quantity import human_bytes

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import stop_for_sure  # noqa: E402
from control_plane import ControlPlane, OperatorProcess, project_crds  # noqa: E402

API = "data.fluid.io/v1alpha1"
NODES = int(os.environ.get("FLUIDV_BENCH_NODES", "1000"))
HOLDERS, OBJECTS, PODS = 4, 40, 200
HOOKED, PLAIN = "quality", "quality-off"


@pytest.fixture(scope="module")
def holders(tmp_path_factory):
    """Objects of 1-8 MiB spread over the local cluster's nodes: {key: {node: bytes}}."""
    import objects

    local = LocalCluster(nodes=HOLDERS, size="256Mi", workdir=str(tmp_path_factory.mktemp("holders")))
    try:
        local.start()
        rng, placed = random.Random(11), {}
        for index in range(OBJECTS):
            node, size = local.nodes[index % HOLDERS], rng.randint(1, 8) << 20
            with objects.connect(node.socket) as store:
                store.put(np.ones(size // 8), name=f"{HOOKED}/feed/obj-{index}")
            placed[f"obj-{index}"] = (node.name, size)
        yield local, placed
    finally:
        stop_for_sure(local)


@pytest.fixture(scope="module")
def plane(tmp_path_factory, holders):
    from fluid_core.operator.certs import self_signed

    local, placed = holders
    crds = project_crds()
    zones = tuple(f"zone-{z}" for z in range(10))
    with ControlPlane(tmp_path_factory.mktemp("quality-plane"), nodes=NODES, zones=zones, crds=crds,
                      node_prefix="node-") as control_plane:
        cert, key = self_signed(["127.0.0.1"], control_plane.workdir / "webhook")
        port = free_ports(1)[0]
        operator = OperatorProcess(control_plane, HOOKED, (cert, key), port, env={"FLUIDV_LOCATIONS_SECONDS": "0.5"})
        for namespace in (HOOKED, PLAIN):
            control_plane.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                                  "metadata": {"name": namespace}})
        control_plane.register_webhook("quality", f"https://127.0.0.1:{port}/mutate-pods", cert, namespace=HOOKED,
                                       object_labels={"role": "consumer"})
        operator.start()
        try:
            for kind, spec in (("Dataset", {}), ("VineyardRuntime", {"replicas": 1, "master": {
                    "endpoint": {"uri": local.etcd_endpoint}}})):
                control_plane.request("POST", f"/apis/{API}/namespaces/{HOOKED}/{kind.lower()}s", {
                    "apiVersion": API, "kind": kind, "metadata": {"name": "feed"}, "spec": spec})
            held = human_bytes(sum(size for _, size in placed.values()))
            control_plane.wait_for(lambda: ((control_plane.request(
                "GET", f"/apis/{API}/namespaces/{HOOKED}/datasets/feed").get("status") or {}).get(
                "cacheStates") or {}).get("cached") == held, timeout=300,
                message=f"dataset bound, its objects' locations read ({held} cached)")
            yield control_plane
        finally:
            operator.stop()


def consumers(plane: ControlPlane, namespace: str, inputs: list[tuple[str, str]]) -> list[str]:
    """Create one pod per pair of inputs; the nodes the scheduler put them on."""
    for index, (first, second) in enumerate(inputs):
        plane.request("POST", f"/api/v1/namespaces/{namespace}/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"c{index}", "labels": {"role": "consumer"},
                         "annotations": {"data.fluid.io/consumes": f"{HOOKED}/feed/{first},{HOOKED}/feed/{second}"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}})

    def scheduled() -> list[str] | None:
        pods = plane.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=role%3Dconsumer")["items"]
        nodes = [p["spec"].get("nodeName") for p in sorted(pods, key=lambda p: int(p["metadata"]["name"][1:]))]
        return nodes if len(nodes) == len(inputs) and all(nodes) else None

    return plane.wait_for(scheduled, timeout=600, message=f"{len(inputs)} pods of {namespace} scheduled")


@pytest.mark.timeout(1800)
def test_share_of_consumers_on_a_node_holding_their_inputs(benchmark, plane, holders):
    _, placed = holders
    rng = random.Random(5)
    inputs = [tuple(rng.sample(sorted(placed), 2)) for _ in range(PODS)]
    figures: dict[str, float] = {}

    def run() -> None:
        for namespace, label in ((PLAIN, "off"), (HOOKED, "on")):
            nodes = consumers(plane, namespace, inputs)
            on_holder = on_top = 0
            for node, keys in zip(nodes, inputs):
                held: dict[str, int] = {}
                for key in keys:
                    holder, size = placed[key]
                    held[holder] = held.get(holder, 0) + size
                on_holder += node in held
                on_top += held.get(node, 0) == max(held.values())  # a tie counts either
            figures[f"on_a_holder_webhook_{label}"] = round(on_holder / PODS, 3)
            figures[f"on_the_top_holder_webhook_{label}"] = round(on_top / PODS, 3)

    benchmark.pedantic(run, rounds=1)
    benchmark.extra_info.update(figures)
    print(f"\n{PODS} consumers on {NODES} nodes ({HOLDERS} hold data): {figures}")
