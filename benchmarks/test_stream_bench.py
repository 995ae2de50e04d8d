"""Streams between two processes: chunks per second, on one node and across nodes.

The producer is this process; the consumer is a separate process that iterates the
stream until its end. One round = N chunks from the first write to the reader's last
chunk. ``extra_info["chunks_per_second"]`` is N divided by the mean. The baseline is
pickle protocol 5 through a pipe, chunk by chunk, in the same run.
"""

from __future__ import annotations

import os
import pickle
import uuid

import numpy as np
import pyarrow as pa
import pytest

from conftest import stop_for_sure
from test_handoff_bench import Consumer, _ask_async
from vineyard_runtime.local import LocalCluster

CHUNKS = 2000
KINDS = {
    "1KiB-numpy": lambda i: np.full(128, i, dtype=np.int64),
    "64KiB-arrow": lambda i: pa.record_batch({"i": np.full(4096, i), "x": np.arange(4096.0)}),
}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    local = LocalCluster(nodes=2, size="2Gi", workdir=str(tmp_path_factory.mktemp("streams")))
    try:
        local.start()
        yield local
    finally:
        stop_for_sure(local)


@pytest.fixture(scope="module")
def reader():
    worker = Consumer()
    worker.ask(op="import")
    try:
        yield worker
    finally:
        worker.close()


@pytest.mark.parametrize("where", ["same-node", "other-node"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_stream_chunks(benchmark, nodes, reader, kind, where):
    import objects

    make = KINDS[kind]
    count = CHUNKS
    chunks = [make(i) for i in range(count)]
    producer_node, reader_node = nodes.nodes[0], nodes.nodes[0 if where == "same-node" else 1]
    store = objects.connect(producer_node.socket)
    names: list[str] = []

    def run() -> float:
        name = f"bench/{uuid.uuid4().hex}"
        names.append(name)
        with store.open_writer(name) as writer:
            answer = _ask_async(reader, op="stream", socket=reader_node.socket, name=name)
            for chunk in chunks:
                writer.write(chunk)
        return answer()

    try:
        got = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    finally:
        for name in names:
            store.delete_stream(name)
        store.close()
    assert got == count
    benchmark.extra_info["chunks_per_second"] = round(count / benchmark.stats.stats.mean)


@pytest.mark.parametrize("kind", list(KINDS))
def test_stream_chunks_pickle_through_a_pipe(benchmark, reader, kind):
    make = KINDS[kind]
    chunks = [make(i) for i in range(CHUNKS)]

    def run() -> float:
        payloads = [pickle.dumps(c, protocol=5) for c in chunks]
        answer = _ask_async(reader, op="pickles", fd=reader.pipe_read, sizes=[len(p) for p in payloads])
        for payload in payloads:
            os.write(reader.pipe_write, payload)
        return answer()

    got = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert got == CHUNKS
    benchmark.extra_info["chunks_per_second"] = round(CHUNKS / benchmark.stats.stats.mean)
