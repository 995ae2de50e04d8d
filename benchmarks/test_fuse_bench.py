"""Sequential read of a 1 GiB ``.npy`` through the FUSE view, against ``objects.get``
plus a copy into private memory (what a reader of the file ends up with), same run.
Goal: >= 1 GB/s through FUSE. ``extra_info["GBps"]``: bytes per second of each."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import objects
from conftest import stop_for_sure
from goals import goal
from objects.fusemount import is_mounted, unmount
from vineyard_runtime.local import LocalCluster
from vineyard_runtime.plumbing.processes import terminate
from vineyard_runtime.plumbing.waiting import wait_until

SIZE = int(os.environ.get("FLUIDV_BENCH_FUSE_BYTES", str(1 << 30)))
CHUNK = 1 << 20

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                                reason="needs /dev/fuse and fusermount3 (Debian package fuse3)")


@pytest.fixture(scope="module")
def mounted(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuse")
    local = LocalCluster(nodes=1, size=f"{2 * SIZE // (1 << 20) + 256}Mi", workdir=str(base / "cluster"),
                         reserve_memory=True)
    point = base / "mnt"
    point.mkdir()
    proc = None
    try:
        local.start()
        with objects.connect(local.nodes[0].socket) as store:
            store.put(np.random.default_rng(0).random(SIZE // 8), name="default/bench/big")
        proc = subprocess.Popen([sys.executable, "-m", "fluid_core.cli", "mount", "bench", str(point),
                                 "--socket", local.nodes[0].socket])
        assert wait_until(lambda: is_mounted(str(point)), 60), "the FUSE view did not mount"
        yield local, point
    finally:
        if proc is not None:
            terminate([proc.pid], timeout=30)
            proc.wait()
        unmount(str(point))
        stop_for_sure(local)


def record(benchmark, nbytes: int) -> float:
    rate = nbytes / benchmark.stats.stats.mean / 1e9
    benchmark.extra_info["GBps"] = round(rate, 2)
    return rate


def test_fuse_sequential_read(benchmark, mounted):
    _, point = mounted
    buffer = bytearray(CHUNK)

    def read() -> int:
        total = 0
        with open(point / "big.npy", "rb", buffering=0) as handle:
            while n := handle.readinto(buffer):
                total += n
        return total

    total = benchmark.pedantic(read, rounds=3, iterations=1, warmup_rounds=1)
    assert total >= SIZE
    goal("fuse", "sequential read >= 1 GB/s through FUSE", record(benchmark, total), at_least=1, unit=" GB/s")


def test_objects_get_and_copy(benchmark, mounted):
    local, _ = mounted
    with objects.connect(local.nodes[0].socket) as store:
        def read() -> int:
            return np.array(store.get("default/bench/big"), copy=True).nbytes

        total = benchmark.pedantic(read, rounds=3, iterations=1, warmup_rounds=1)
    record(benchmark, total)
