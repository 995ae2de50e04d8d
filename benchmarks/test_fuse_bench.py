"""Sequential read of a 1 GiB ``.npy`` through the FUSE view, against ``objects.get``
plus a copy into private memory (what a reader of the file ends up with), same run.
Goal: >= 1 GB/s through FUSE. ``extra_info["GBps"]``: bytes per second of each."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import objects
from conftest import stop_for_sure
from objects.fusemount import is_mounted, unmount
from vineyard_runtime.local import LocalCluster
from vineyard_runtime.processes import terminate

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
        deadline = time.monotonic() + 60
        while not is_mounted(str(point)) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield local, point
    finally:
        if proc is not None:
            terminate([proc.pid], timeout=30)
            proc.wait()
        unmount(str(point))
        stop_for_sure(local)


def record(benchmark, nbytes: int) -> None:
    benchmark.extra_info["GBps"] = round(nbytes / benchmark.stats.stats.mean / 1e9, 2)


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
    record(benchmark, total)


def test_objects_get_and_copy(benchmark, mounted):
    local, _ = mounted
    with objects.connect(local.nodes[0].socket) as store:
        def read() -> int:
            return np.array(store.get("default/bench/big"), copy=True).nbytes

        total = benchmark.pedantic(read, rounds=3, iterations=1, warmup_rounds=1)
    record(benchmark, total)
