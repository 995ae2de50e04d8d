"""The FUSE view: real mounts of a real local cluster's dataset."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import objects
from support.waiting import wait_for as wait
from crafted import entry_of, hidden_in_nested
from objects.fusemount import is_mounted, unmount
from vineyard_runtime.plumbing.processes import terminate

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                                reason="needs /dev/fuse and fusermount3 (Debian package fuse3)")


@pytest.fixture
def mounted(shared_cluster, tmp_path):
    """``mount(dataset, writable=False)`` -> (mountpoint, process); all unmounted after."""
    started = []

    def mount(dataset: str, writable: bool = False, metrics_port: int | None = None):
        point = tmp_path / f"mnt-{dataset}-{len(started)}"
        point.mkdir()
        argv = [sys.executable, "-m", "fluid_core.cli", "mount", dataset, str(point), "--socket",
                shared_cluster.nodes[0].socket] + (["--writable"] if writable else [])
        if metrics_port is not None:
            argv += ["--metrics-port", str(metrics_port)]
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        started.append((point, proc))
        wait(lambda: is_mounted(str(point)), message="mounted")
        return point, proc

    try:
        yield mount
    finally:
        for point, proc in started:
            terminate([proc.pid], timeout=15)
            proc.wait()
            unmount(str(point))
            subprocess.run(["pkill", "-9", "-f", f"objects.fuseview {point}"], check=False)


@pytest.fixture
def store(shared_cluster):
    with objects.connect(shared_cluster.nodes[0].socket) as connected:
        yield connected


def test_reads_through_the_mount_equal_the_objects(mounted, store):
    array = np.arange(100_000, dtype=np.float64).reshape(1000, 100)
    frame = pd.DataFrame({"x": np.arange(5), "name": list("abcde")})
    store.put(array, name="default/view/features", replace=True)
    store.put(np.asfortranarray(np.arange(6).reshape(2, 3)), name="default/view/deep/er/f", replace=True)
    store.put(frame, name="default/view/table", replace=True)
    store.put({"weights": np.ones(3), "meta": {"bias": np.zeros(2)}}, name="default/view/model", replace=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    point, _ = mounted("view", metrics_port=port)
    assert sorted(os.listdir(point)) == ["deep", "features.npy", "model", "table.arrow", "table.parquet"]
    np.testing.assert_array_equal(np.load(point / "features.npy"), array)
    fortran = np.load(point / "deep" / "er" / "f.npy")
    np.testing.assert_array_equal(fortran, np.arange(6).reshape(2, 3))
    assert pa.ipc.open_file(str(point / "table.arrow")).read_all().to_pandas().equals(frame)
    assert pq.read_table(point / "table.parquet").to_pandas().equals(frame)
    np.testing.assert_array_equal(np.load(point / "model" / "meta" / "bias.npy"), np.zeros(2))
    for name in ("features.npy", "table.arrow", "table.parquet"):
        assert os.stat(point / name).st_size == len((point / name).read_bytes())
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        served = float(re.search(r"^fluidv_fuse_bytes_served_total (\S+)$", reply.read().decode(), re.M).group(1))
    assert served >= array.nbytes
    with pytest.raises(OSError) as denied:
        (point / "new.npy").write_bytes(b"x")
    assert denied.value.errno in (errno.EROFS, errno.EACCES)
    with pytest.raises(FileNotFoundError):
        (point / "missing.npy").read_bytes()
    store.delete_many(prefix="default/view/")


def test_a_listing_never_unpickles_and_shows_the_rest(mounted, store, tmp_path):
    marker = tmp_path / "ran"
    planted = hidden_in_nested(store.client, marker)
    store.directory.create("default/bait/model", entry_of(store, store.client.get_meta(planted)))
    store.put(np.arange(4.0), name="default/bait/plain", replace=True)
    try:
        point, _ = mounted("bait")
        assert os.listdir(point) == ["plain.npy"]  # the planted object is not shown, the rest is
        np.testing.assert_array_equal(np.load(point / "plain.npy"), np.arange(4.0))
        assert not marker.exists()
    finally:
        store.delete_many(prefix="default/bait/")


def test_writes_create_objects_and_rm_deletes(mounted, store):
    point, _ = mounted("inbox", writable=True)
    np.save(point / "grid.npy", np.eye(4))
    pq.write_table(pa.table({"a": [1, 2, 3]}), point / "rows.parquet")
    with pa.OSFile(str(point / "batch.arrow"), "wb") as sink, pa.ipc.new_file(sink, pa.schema([("b", pa.int8())])) as writer:
        writer.write_table(pa.table({"b": pa.array([1, 2], pa.int8())}))
    np.testing.assert_array_equal(store.get("default/inbox/grid"), np.eye(4))
    assert store.get("default/inbox/rows").column("a").to_pylist() == [1, 2, 3]
    assert store.get("default/inbox/batch").column("b").to_pylist() == [1, 2]
    os.remove(point / "grid.npy")
    assert not store.exists("default/inbox/grid")
    with pytest.raises(OSError) as bad:
        (point / "notes.txt").write_text("x")
    assert bad.value.errno == errno.EINVAL
    with pytest.raises(OSError) as broken:
        (point / "broken.npy").write_bytes(b"not an npy")
    assert broken.value.errno == errno.EIO
    store.delete_many(prefix="default/inbox/")


def test_a_killed_fuse_process_is_remounted_and_sigterm_unmounts(mounted, store):
    store.put(np.arange(10), name="default/heal/a", replace=True)
    point, proc = mounted("heal")
    found = subprocess.run(["pgrep", "-f", f"objects.fuseview {point}"], capture_output=True, text=True)
    child = int(found.stdout.split()[0])
    os.kill(child, signal.SIGKILL)
    wait(lambda: np.array_equal(np.load(point / "a.npy"), np.arange(10)), timeout=120, interval=0.05,
         message="usable again after a remount")
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    assert not is_mounted(str(point)) and os.listdir(point) == []
    store.delete_many(prefix="default/heal/")


def test_mount_refuses_a_non_empty_directory(shared_cluster, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    run = subprocess.run([sys.executable, "-m", "fluid_core.cli", "mount", "x", str(tmp_path / "busy"),
                          "--socket", shared_cluster.nodes[0].socket], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "is not empty" in run.stderr
