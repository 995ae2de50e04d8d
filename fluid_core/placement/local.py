"""The cluster view of a local cluster: its nodes, and objects located through its etcd."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fluid_core.placement.locations import read_locations
from fluid_core.placement.view import ClusterView


def local_view(cluster: Any, datasets: Iterable[str]) -> ClusterView:
    """Every node of a local cluster caches every dataset (``ns/name``) it serves."""
    nodes = {n.name: dict(n.labels) for n in cluster.nodes}
    return ClusterView(nodes=nodes, datasets={d: tuple(nodes) for d in datasets},
                       objects=read_locations(cluster.etcd_endpoint, etcd_prefix=cluster.etcd_prefix))
