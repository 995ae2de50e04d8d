"""Local cluster: start-up time, and cross-node transfer against a TCP stream on loopback.

Run with ``make bench``. Each transfer benchmark records GB/s in ``extra_info``.
"""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from conftest import stop_for_sure
from vineyard_runtime.local import LocalCluster

SIZES = {"64MiB": 64 * 2**20, "1GiB": 2**30}


def test_start_3_nodes(benchmark, tmp_path):
    started: list[LocalCluster] = []

    def setup():
        while started:
            stop_for_sure(started.pop())
        return (LocalCluster(nodes=3, size="256Mi", workdir=str(tmp_path)),), {}

    def start(local):
        started.append(local)
        local.start()

    try:
        benchmark.pedantic(start, setup=setup, rounds=3)
    finally:
        while started:
            stop_for_sure(started.pop())


@pytest.mark.parametrize("size", list(SIZES))
def test_cross_node_vineyard_migration(benchmark, two_nodes, size):
    nbytes = SIZES[size]
    producer, consumer = two_nodes.client("node-0"), two_nodes.client("node-1")
    data = np.random.default_rng(0).random(nbytes // 8)

    def setup():
        # drop the previous round's source and migrated copy by deleting them (clear()
        # would hand the node's memory back to the kernel and make the next round fault)
        for client in (producer, consumer):
            mine = [m.id for m in client.list_metadatas("*", limit=1000) if m.instance_id == client.instance_id]
            if mine:
                client.delete(mine, force=True, deep=True)
        return (producer.put(data, persist=True),), {}

    def fetch(oid):
        return consumer.get(oid, fetch=True)

    result = benchmark.pedantic(fetch, setup=setup, rounds=3)
    assert result.shape == data.shape and result[-1] == data[-1]
    benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.mean / 1e9, 3)
    producer.close()
    consumer.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_cross_node_tcp_stream_baseline(benchmark, size):
    """One TCP stream on 127.0.0.1, sender to receiver buffer: the bar to compare with."""
    nbytes = SIZES[size]
    payload = memoryview(np.ones(nbytes, dtype=np.uint8))
    target = memoryview(bytearray(nbytes))

    def setup():
        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]

        def send():
            conn, _ = server.accept()
            with conn:
                conn.sendall(payload)
            server.close()

        thread = threading.Thread(target=send)
        thread.start()
        client = socket.create_connection(("127.0.0.1", port))
        return (client, thread), {}

    def receive(client, thread):
        got = 0
        with client:
            while got < nbytes:
                got += client.recv_into(target[got:], min(nbytes - got, 1 << 22))
        thread.join()

    benchmark.pedantic(receive, setup=setup, rounds=3)
    benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.mean / 1e9, 3)


FIRST_READ_SIZES = {"1KiB": 1 << 10, **SIZES}


@pytest.mark.parametrize("size", list(FIRST_READ_SIZES))
def test_cross_node_objects_first_read(benchmark, two_nodes, size):
    """A named object put on node-0, read for the first time on node-1: a small one comes
    inline from the directory, a large one is received from node-0's blob server into new
    blobs of node-1 (recorded there as its copy)."""
    import objects

    nbytes = FIRST_READ_SIZES[size]
    producer, consumer = (objects.connect(two_nodes.node(n).socket) for n in ("node-0", "node-1"))
    data = np.random.default_rng(0).random(nbytes // 8)
    names = iter(range(1_000_000))
    previous: list[str] = []

    def setup():
        if previous:  # frees the source and the copy the consumer's node received, as users do
            producer.delete(previous.pop())
        previous.append(f"first-read/{next(names)}")
        producer.put(data, previous[-1])
        return (previous[-1],), {}

    try:
        # a warm-up round first: the TCP baseline, too, receives into memory it has touched
        result = benchmark.pedantic(consumer.get, setup=setup, rounds=5 if nbytes < 1 << 30 else 3,
                                    warmup_rounds=1)
    finally:
        producer.delete_many(prefix="first-read/")
        producer.close()
        consumer.close()
    assert result.shape == data.shape and result[-1] == data[-1]
    benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats.stats.mean / 1e9, 3)
    benchmark.extra_info["median_ms"] = round(benchmark.stats.stats.median * 1e3, 3)
