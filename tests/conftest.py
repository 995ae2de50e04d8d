"""Shared fixtures: real local clusters, stopped by pid even when a test fails."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from support.localcluster import cluster_pids, force_stop

from vineyard_runtime.local import LocalCluster

# The emulated cluster has no DNS for in-cluster etcd names: the operator reads no
# object directory unless a test names a real etcd and turns the reading on.
os.environ.setdefault("FLUIDV_LOCATIONS_SECONDS", "0")


@pytest.fixture
def make_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Factory of started clusters; every one is stopped (by pid) after the test."""
    started: list[tuple[LocalCluster, set[int]]] = []

    def make(nodes: int = 3, size: str = "256Mi", **kwargs: object) -> LocalCluster:
        kwargs.setdefault("workdir", str(tmp_path_factory.mktemp("cluster")))
        local = LocalCluster(nodes=nodes, size=size, **kwargs)  # type: ignore[arg-type]
        seen: set[int] = set()
        started.append((local, seen))
        local.start()
        seen.update(cluster_pids(local.state))
        return local

    try:
        yield make
    finally:
        for local, seen in started:
            force_stop(local, seen)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-node cluster shared by the tests of one module that do not break it."""
    local = LocalCluster(nodes=3, size="256Mi", zones=["a", "a", "b"],
                         workdir=str(tmp_path_factory.mktemp("shared")))
    seen: set[int] = set()
    try:
        local.start()
        seen.update(cluster_pids(local.state))
        yield local
    finally:
        force_stop(local, seen)


@pytest.fixture(scope="module")
def stores(shared_cluster) -> Iterator[dict]:
    """An ``objects`` store per node of the shared cluster, closed afterwards."""
    import objects

    opened = {n.name: objects.connect(n.socket) for n in shared_cluster.nodes}
    try:
        yield opened
    finally:
        for store in opened.values():
            store.close()
