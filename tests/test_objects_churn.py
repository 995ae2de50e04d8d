"""A name replaced in a loop while another process reads it, on the same node and across
nodes: every read returns one whole version (old or new), never "not found" while the
name exists; and an error a holder's blob server sends is told apart from its node
being gone."""

from __future__ import annotations

import multiprocessing
from typing import Any

import numpy as np
import pytest

import objects
from support.reading import memory_used
from vineyard_runtime.plumbing.waiting import wait_until

NAME = "default/churn/rep"
ELEMENTS = 1 << 16  # 512 KiB of float64: blobs, not an inline value


def replace_until_told(socket: str, started: Any, stop: Any) -> None:
    """The writer: ``NAME`` replaced by version 1, 2, ... until ``stop`` is set."""
    with objects.connect(socket) as store:
        version = 0
        while not stop.is_set():
            version += 1
            store.put(np.full(ELEMENTS, float(version)), NAME, replace=True)
            started.set()


@pytest.mark.parametrize("where", ["same node", "other node"])
def test_a_name_replaced_in_a_loop_reads_as_one_whole_version(make_cluster, where):
    local = make_cluster(nodes=2, size="512Mi")
    writer_node, reader_node = local.state.nodes[0], local.state.nodes[0 if where == "same node" else 1]
    stores = [objects.connect(node.socket) for node in local.state.nodes]
    idle = [memory_used(store) for store in stores]
    stores[0].put(np.zeros(ELEMENTS), NAME)
    context = multiprocessing.get_context("spawn")
    started, stop = context.Event(), context.Event()
    writer = context.Process(target=replace_until_told, args=(writer_node.socket, started, stop), daemon=True)
    writer.start()
    versions: set[float] = set()
    try:
        assert started.wait(60), "the writer never put a version"
        with objects.connect(reader_node.socket) as reader:
            reads = 0
            while reads < 200 or len(versions) < 3:  # until the reads really raced the writer
                value = reader.get(NAME)
                assert value.shape == (ELEMENTS,) and value.min() == value.max(), "a torn read"
                versions.add(float(value[0]))
                reads += 1
                assert reads < 20_000, "the writer stopped writing"
            del value  # its pin goes with it
    finally:
        stop.set()
        writer.join(30)
        if writer.is_alive():
            writer.kill()
            writer.join()
    assert writer.exitcode == 0
    # every version and every copy a reader received is freed: the nodes use what they did before
    stores[0].delete(NAME)
    back = wait_until(lambda: [memory_used(store) for store in stores] == idle, timeout=60)
    assert back, f"memory in use {[memory_used(store) for store in stores]}, before the churn {idle}"
    for store in stores:
        store.close()


def test_a_blob_servers_answer_is_told_apart_from_its_silence(make_cluster):
    """An error the holder's blob server sends (here: a wrong token) is its answer
    (``answered``), which readers report as the server's failure; only a connection that
    closes or cannot be made counts as the node not answering."""
    from vineyard_runtime.node.blob_server import BlobFetchError, BlobFetcher
    from vineyard_runtime.etcd_keys import endpoint_key
    from vineyard_runtime.etcd_client import EtcdClient

    local = make_cluster(nodes=2, size="64Mi")
    node = local.state.nodes[0]
    endpoint = EtcdClient(local.state.etcd.endpoint).get(
        endpoint_key(local.state.etcd_prefix, node.instance_id)).value.decode()
    with pytest.raises(BlobFetchError, match="not authorized") as refused:
        BlobFetcher(endpoint, token="guessed").fetch_object("o0000000000000001", bytearray)
    assert refused.value.answered
