"""Placement through the real scheduler: the operator's webhook, called by the API server,
writes node-affinity terms from where a real local cluster's vineyardd nodes hold the
objects (the runtime's external etcd is that cluster's), and kube-scheduler places the
pods on KWOK nodes named like those vineyardd nodes."""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from control_plane import (
    ControlPlane,
    OperatorProcess,
    create_resource,
    project_crds,
    resource_status,
)

from fluid_core.kube import KubeClient, Ref
from vineyard_runtime.plumbing.ports import free_ports
from vineyard_runtime.quantity import human_bytes

API = "data.fluid.io/v1alpha1"
NS = "placed"
ROOT = Path(__file__).resolve().parent.parent
#: bytes held per node: node-1 three times what node-2 holds, node-0 nothing
OBJECTS = {"big": ("node-1", 3 * 2**20), "small": ("node-2", 2**20)}
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


@pytest.fixture(scope="module")
def plane(tmp_path_factory, shared_cluster):
    crds = project_crds()
    zones = tuple(node.labels["topology.kubernetes.io/zone"] for node in shared_cluster.nodes)
    with ControlPlane(tmp_path_factory.mktemp("placement-plane"), nodes=3, zones=zones, crds=crds,
                      node_prefix="node-") as control_plane:
        assert control_plane.node_names() == [node.name for node in shared_cluster.nodes]
        yield control_plane


@pytest.fixture(scope="module")
def kube(plane, shared_cluster):
    """The operator (reading object locations every half second) behind a webhook the API
    server calls for every pod of the namespace, and a bound dataset whose objects sit
    on node-1 and node-2."""
    import objects
    from fluid_core.operator.certs import self_signed

    for name, (node, size) in OBJECTS.items():
        with objects.connect(shared_cluster.node(node).socket) as store:
            store.put(np.ones(size // 8), name=f"{NS}/feed/{name}")
    cert, key = self_signed(["127.0.0.1"], plane.workdir / "webhook")
    port = free_ports(1)[0]
    operator = OperatorProcess(plane, NS, (cert, key), port, env={"FLUIDV_LOCATIONS_SECONDS": "0.5"})
    client = KubeClient(plane.api_client())
    client.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    plane.register_webhook("placement-test", f"https://127.0.0.1:{port}/mutate-pods", cert, namespace=NS)
    operator.start()
    try:
        create(client, "Dataset", "feed", {})
        # a worker on every node: the dataset's cache tier prefers no node over another
        create(client, "VineyardRuntime", "feed", {"replicas": 3, "master": {"endpoint": {
            "uri": shared_cluster.etcd_endpoint}}})
        held = human_bytes(sum(size for _, size in OBJECTS.values()))
        plane.wait_for(lambda: (status_of(client, "Dataset", "feed").get("cacheStates") or {}).get(
            "cached") == held, timeout=120, message=f"dataset bound, its objects' locations read ({held} cached)")
        yield client
    finally:
        plane.request("DELETE", f"{WEBHOOKS}/placement-test")
        operator.stop()


create = functools.partial(create_resource, namespace=NS)
status_of = functools.partial(resource_status, namespace=NS)


def consumer(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "labels": {"app": name},
                         "annotations": {"data.fluid.io/consumes": "big,small", **annotations}},
            "spec": {"containers": [{"name": "c", "image": "x"}], "terminationGracePeriodSeconds": 0,
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "feed"}}]}}


def node_of(plane: ControlPlane, kube: KubeClient, pod: str) -> str:
    return plane.wait_for(lambda: (kube.get(Ref("v1", "Pod", NS, pod)) or {}).get("spec", {}).get("nodeName"),
                          timeout=60, message=f"{pod} scheduled")


def test_a_consumer_lands_on_the_node_holding_most_of_its_bytes(plane, kube):
    kube.request("POST", Ref("v1", "Pod", NS).path(), {"apiVersion": "v1", "kind": "Pod", **consumer("reader", {})})
    try:
        assert node_of(plane, kube, "reader") == "node-1"
    finally:
        kube.request("DELETE", Ref("v1", "Pod", NS, "reader").path() + "?gracePeriodSeconds=0")


def test_replicas_spread_over_the_holders_in_proportion_to_their_bytes(plane, kube):
    """Four replicas of a StatefulSet reading 3 MiB on node-1 and 1 MiB on node-2: three
    on node-1, one on node-2, none on node-0: each rank is preferred on its share of the
    holders, and opted out of the scheduler's default spreading, which would even them out."""
    template = consumer("readers", {"data.fluid.io/replicas": "4"})
    kube.request("POST", f"/apis/apps/v1/namespaces/{NS}/statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "readers", "namespace": NS},
        "spec": {"replicas": 4, "podManagementPolicy": "Parallel", "serviceName": "readers",
                 "selector": {"matchLabels": {"app": "readers"}},
                 "template": {"metadata": {k: v for k, v in template["metadata"].items() if k != "name"},
                              "spec": template["spec"]}}})
    try:
        nodes = Counter(node_of(plane, kube, f"readers-{index}") for index in range(4))
        assert nodes == Counter({"node-1": 3, "node-2": 1})
    finally:
        kube.request("DELETE", f"/apis/apps/v1/namespaces/{NS}/statefulsets/readers")


def test_a_prefer_step_runs_on_its_predecessors_node(plane, kube):
    """runAfter with affinityStrategy Prefer: the step's Job pod is preferred (not
    required) on the node its predecessor ran on, and the scheduler puts it there."""
    create(kube, "DataLoad", "warm", {"dataset": {"name": "feed"}})
    create(kube, "DataProcess", "next", {
        "dataset": {"name": "feed"}, "processor": {"script": {"image": "busybox", "source": "echo hi"}},
        "runAfter": {"kind": "DataLoad", "name": "warm", "affinityStrategy": {"policy": "Prefer"}}})
    try:
        warm = plane.wait_for(lambda: (s := status_of(kube, "DataLoad", "warm")).get("phase") == "Complete" and s,
                              timeout=120, message="DataLoad complete")
        step = plane.wait_for(lambda: (s := status_of(kube, "DataProcess", "next")).get("phase") == "Complete"
                              and s, timeout=120, message="its successor complete")
        job = kube.get(Ref("batch/v1", "Job", NS, "next-dataprocess"))
        affinity = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        assert affinity.get("preferredDuringSchedulingIgnoredDuringExecution")
        assert not affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        assert step["node"] == warm["node"]
    finally:
        kube.delete(Ref(API, "DataProcess", NS, "next"))
        kube.delete(Ref(API, "DataLoad", NS, "warm"))
