"""The project's own IPC client (``objects.ipc``) beside vineyard's client, in one run,
against one real vineyardd: a bare round trip (``instance_status``, the floor), making
and sealing one blob, making and sealing 16 blobs (one round trip each way for ours, two
per blob for vineyard's), and getting one blob. Goal (issue 31): one round trip per put
however many blobs, i.e. 16 blobs cost less than twice one blob."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import stop_for_sure
from goals import goal, record_baseline
from vineyard_runtime.local import LocalCluster

FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    local = LocalCluster(nodes=1, size="512Mi", workdir=str(tmp_path_factory.mktemp("ipc")))
    try:
        local.start()
        yield local.nodes[0]
    finally:
        stop_for_sure(local)


@pytest.fixture(scope="module")
def ours(node):
    from objects.ipc import VineyardIPC

    with VineyardIPC(node.socket, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def theirs(node):
    import vineyard

    client = vineyard.connect(node.socket)
    try:
        yield client
    finally:
        client.close()


def _mean(benchmark: Any, key: str) -> None:
    FIGURES[key] = benchmark.stats.stats.median


def test_round_trip_ours(benchmark, ours):
    benchmark(ours.instance_status)
    _mean(benchmark, "ours round trip")


def test_round_trip_vineyard(benchmark, theirs):
    benchmark(lambda: theirs.status)
    _mean(benchmark, "vineyard round trip")


@pytest.mark.parametrize("count", [1, 16])
def test_create_and_seal_ours(benchmark, ours, count):
    made: list[int] = []

    def put() -> None:
        blobs = ours.create_blobs([4096] * count)
        ours.seal(b.id for b in blobs)
        made.extend(b.id for b in blobs)

    benchmark(put)
    ours.delete(made)
    _mean(benchmark, f"ours {count} blobs")


@pytest.mark.parametrize("count", [1, 16])
def test_create_and_seal_vineyard(benchmark, theirs, count):
    made: list[Any] = []

    def put() -> None:
        for _ in range(count):
            made.append(theirs.create_blob(4096).seal(theirs).id)

    benchmark(put)
    theirs.delete(made)
    _mean(benchmark, f"vineyard {count} blobs")
    if count == 16 and "ours 16 blobs" in FIGURES:
        record_baseline("vineyard's client", {k: v for k, v in FIGURES.items() if k.startswith("vineyard")})
        goal("ipc", "16 blobs put in less than twice one blob's time (one round trip)",
             FIGURES["ours 16 blobs"] / FIGURES["ours 1 blobs"], at_most=2, unit="x")
        goal("ipc", "16 blobs: ours faster than vineyard's client",
             FIGURES["vineyard 16 blobs"] / FIGURES["ours 16 blobs"], at_least=1, unit="x")


def test_get_one_blob_ours(benchmark, ours):
    (blob,) = ours.create_blobs([4096])
    ours.seal([blob.id])
    benchmark(lambda: ours.get_blobs([blob.id]))
    ours.delete([blob.id])
    _mean(benchmark, "ours get")
