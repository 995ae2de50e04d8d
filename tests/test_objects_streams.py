"""Streams: a consumer reads while the producer writes; the end and failures are visible."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pytest

import objects

PRODUCER = """
    import sys, time, numpy as np, pyarrow as pa, objects
    store = objects.connect()
    mode, name = sys.argv[1], sys.argv[2]
    writer = store.open_writer(name)
    for i in range(4):
        writer.write(pa.record_batch({"i": np.full(1000, i), "x": np.arange(1000.0)}))
        print("wrote", i, flush=True)
        time.sleep(0.2)
    if mode == "crash":
        import os; os._exit(9)
    if mode == "fail":
        with writer:
            raise ValueError("bad input row 17")
    writer.close()
"""


def start_producer(socket: str, mode: str, name: str) -> subprocess.Popen:
    env = dict(os.environ, VINEYARD_IPC_SOCKET=socket)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(PRODUCER), mode, name],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def producer_socket(shared_cluster):
    return shared_cluster.node("node-0").socket


def test_consumer_starts_before_the_producer_finishes(stores, producer_socket):
    proc = start_producer(producer_socket, "ok", "s/ok")
    try:
        reader = stores["node-2"].open_reader("s/ok", timeout=60, idle_timeout=60)
        seen, first_at = [], None
        for batch in reader:
            if first_at is None:
                first_at = time.monotonic()
                assert proc.poll() is None, "the first chunk arrives while the producer still runs"
            seen.append(batch)
        assert [b.column("i")[0].as_py() for b in seen] == [0, 1, 2, 3]
        assert all(isinstance(b, pa.RecordBatch) and b.num_rows == 1000 for b in seen)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    assert stores["node-0"].delete_stream("s/ok") == 6  # header, 4 chunks, end


def test_producer_failure_reaches_the_reader(stores, producer_socket):
    proc = start_producer(producer_socket, "fail", "s/fail")
    try:
        chunks = []
        with pytest.raises(objects.StreamFailed, match="ValueError: bad input row 17"):
            for batch in stores["node-1"].open_reader("s/fail", timeout=60, idle_timeout=60):
                chunks.append(batch)
        assert len(chunks) == 4, "chunks written before the failure are delivered"
    finally:
        proc.kill()
        proc.wait()


def test_crashed_producer_is_detected(stores, producer_socket):
    proc = start_producer(producer_socket, "crash", "s/crash")
    try:
        with pytest.raises(objects.StreamFailed, match=r"exited without closing it after 4 chunk"):
            for _ in stores["node-0"].open_reader("s/crash", timeout=60, idle_timeout=60):
                pass
        assert proc.wait(timeout=30) == 9
    finally:
        proc.kill()
        proc.wait()


def test_numpy_chunks_in_process(stores):
    with stores["node-1"].open_writer("s/np", labels={"run": "r"}) as writer:
        for i in range(3):
            writer.write(np.full((2, 2), i))
    got = list(stores["node-1"].open_reader("s/np"))
    assert [int(a[0, 0]) for a in got] == [0, 1, 2]
    with pytest.raises(objects.ObjectExists, match="stream named 's/np' already exists"):
        stores["node-1"].open_writer("s/np")
    with pytest.raises(objects.ObjectsError, match="record batches/tables or numpy"):
        stores["node-1"].open_writer("s/bad").write({"not": "a chunk"})


def test_reader_timeouts(stores):
    with pytest.raises(objects.ObjectNotFound, match="did not start to be opened within 0.2s"):
        stores["node-0"].open_reader("s/never", timeout=0.2)
    writer = stores["node-0"].open_writer("s/idle")
    writer.write(np.ones(1))
    with pytest.raises(objects.StreamFailed, match="no chunk of stream 's/idle' arrived for 0.3s"):
        for _ in stores["node-2"].open_reader("s/idle", idle_timeout=0.3):
            pass
    writer.close()
    with pytest.raises(objects.ObjectNotFound, match="no stream named 's/none'"):
        stores["node-0"].delete_stream("s/none")


def test_streams_do_not_show_in_listings(stores):
    with stores["node-0"].open_writer("s/hidden") as writer:
        writer.write(np.ones(1))
    assert not [r for r in stores["node-0"].list() if "s/hidden" in (r.name or "")]
