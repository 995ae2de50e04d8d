"""Cross-process handoff: process A has float64 data, process B has summed it.

Channels, side by side in one run: this project's ``put`` (named, and unnamed as Ray's)
and ``allocate``, plain
vineyard put/get, ``multiprocessing.shared_memory``, pickle protocol 5 through a
pipe, an Arrow IPC file on /dev/shm, and Ray's object store (an actor sums; needs the
``bench`` extra); single-thread memcpy is the reference.
``extra_info["x_memcpy"]`` is each mean divided by memcpy's mean for that size.
For ``allocate`` the clock starts when A has finished writing in place.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import uuid
from multiprocessing import shared_memory

import numpy as np
import pyarrow as pa
import pytest

from conftest import stop_for_sure
from goals import baseline, record_baseline
from vineyard_runtime.local import LocalCluster

WORKER = os.path.join(os.path.dirname(__file__), "handoff_worker.py")
SIZES = {"1KiB": 1 << 10, "1MiB": 1 << 20, "64MiB": 64 << 20, "256MiB": 256 << 20, "1GiB": 1 << 30}


def rounds_for(nbytes: int) -> int:
    return 200 if nbytes <= 1 << 20 else 5 if nbytes <= 256 << 20 else 3


class Consumer:
    """Process B: a long-lived worker that sums what it is handed."""

    def __init__(self) -> None:
        self.pipe_read, self.pipe_write = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            pass_fds=(self.pipe_read,), bufsize=1,
        )

    def ask(self, **cmd: object) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["sum"]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.pipe_read)
        os.close(self.pipe_write)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    local = LocalCluster(nodes=1, size="3Gi", workdir=str(tmp_path_factory.mktemp("handoff")))
    try:
        local.start()
        yield local.nodes[0]
    finally:
        stop_for_sure(local)


@pytest.fixture(scope="module")
def consumer():
    worker = Consumer()
    try:
        yield worker
    finally:
        worker.close()


@pytest.fixture(scope="module")
def store(node):
    import objects

    with objects.connect(node.socket) as connected:
        yield connected


def data_of(nbytes: int) -> np.ndarray:
    return np.random.default_rng(0).random(nbytes // 8)


def record(benchmark, size: str) -> None:
    mean = benchmark.stats.stats.mean
    benchmark.extra_info["size"] = size
    benchmark.extra_info["median_ms"] = round(benchmark.stats.stats.median * 1e3, 3)
    benchmark.extra_info["per_second"] = round(1 / mean, 1)
    memcpy = baseline("memcpy", size, "select test_0_memcpy_reference too (-k 'memcpy or ...')")
    benchmark.extra_info["x_memcpy"] = round(mean / memcpy, 3) if memcpy else "memcpy did not run"


@pytest.mark.parametrize("size", list(SIZES))
def test_0_memcpy_reference(benchmark, size):
    src = data_of(SIZES[size])
    dst = np.empty_like(src)
    np.copyto(dst, src)
    benchmark.pedantic(np.copyto, args=(dst, src), rounds=rounds_for(SIZES[size]), warmup_rounds=1)
    record_baseline("memcpy", {size: benchmark.stats.stats.mean})
    record(benchmark, size)


class RoundNames:
    """A fresh object name per round; the previous round's object is deleted first."""

    def __init__(self, store) -> None:
        self.store, self.current = store, None

    def next(self) -> str:
        if self.current is not None:
            self.store.delete(self.current)
        self.current = f"h/{uuid.uuid4().hex}"
        return self.current


@pytest.mark.parametrize("size", list(SIZES))
def test_objects_put_named(benchmark, size, store, consumer, node):
    data = data_of(SIZES[size])
    expected = float(data.sum())
    names = RoundNames(store)

    def setup():
        return (names.next(),), {}

    def handoff(name):
        store.put(data, name)
        return consumer.ask(op="objects", socket=node.socket, name=name)

    total = benchmark.pedantic(handoff, setup=setup, rounds=rounds_for(SIZES[size]), warmup_rounds=1)
    assert total == pytest.approx(expected)
    record(benchmark, size)
    names.next()  # deletes the last round's object


@pytest.mark.parametrize("size", list(SIZES))
def test_objects_put_unnamed(benchmark, size, store, consumer, node):
    """As Ray's ``put``: no name, no etcd write; the consumer gets the object by its id."""
    data = data_of(SIZES[size])
    expected = float(data.sum())
    made: list[str] = []

    def setup():
        while made:
            store.delete(made.pop())
        return (), {}

    def handoff():
        made.append(store.put(data).id)
        return consumer.ask(op="objects", socket=node.socket, name=made[-1])

    total = benchmark.pedantic(handoff, setup=setup, rounds=rounds_for(SIZES[size]), warmup_rounds=1)
    assert total == pytest.approx(expected)
    record(benchmark, size)
    setup()


@pytest.mark.parametrize("size", list(SIZES))
def test_objects_allocate_named(benchmark, size, store, consumer, node):
    data = data_of(SIZES[size])
    expected = float(data.sum())
    names = RoundNames(store)

    def setup():
        name = names.next()
        allocation = store.allocate(data.shape, data.dtype, name)
        np.copyto(allocation.__enter__(), data)  # the producer's own work: not timed
        return (allocation, name), {}

    def handoff(allocation, name):
        allocation.__exit__(None, None, None)
        return consumer.ask(op="objects", socket=node.socket, name=name)

    total = benchmark.pedantic(handoff, setup=setup, rounds=rounds_for(SIZES[size]), warmup_rounds=1)
    assert total == pytest.approx(expected)
    record(benchmark, size)
    names.next()  # deletes the last round's object


@pytest.mark.parametrize("size", list(SIZES))
def test_plain_vineyard_named(benchmark, size, store, consumer, node):
    client = store.client  # the same vineyard client, used the plain way
    data = data_of(SIZES[size])
    expected = float(data.sum())
    made: list = []

    def setup():
        for oid, name in made:
            client.drop_name(name)
            client.delete(oid)
        made.clear()
        return (f"v/{uuid.uuid4().hex}",), {}

    def handoff(name):
        oid = client.put(data, persist=True)
        client.put_name(oid, name)
        made.append((oid, name))
        return consumer.ask(op="vineyard", socket=node.socket, name=name)

    total = benchmark.pedantic(handoff, setup=setup, rounds=rounds_for(SIZES[size]), warmup_rounds=1)
    assert total == pytest.approx(expected)
    record(benchmark, size)
    setup()


@pytest.mark.parametrize("size", list(SIZES))
def test_multiprocessing_shared_memory(benchmark, size, consumer):
    data = data_of(SIZES[size])
    expected = float(data.sum())
    made: list[shared_memory.SharedMemory] = []

    def cleanup():
        for shm in made:
            shm.close()
            shm.unlink()
        made.clear()

    def handoff():
        shm = shared_memory.SharedMemory(create=True, size=data.nbytes)
        made.append(shm)
        np.copyto(np.ndarray(data.shape, data.dtype, buffer=shm.buf), data)
        return consumer.ask(op="shm", name=shm.name, count=data.size)

    total = benchmark.pedantic(handoff, setup=lambda: cleanup() or ((), {}),
                               rounds=rounds_for(SIZES[size]), warmup_rounds=1)
    cleanup()
    assert total == pytest.approx(expected)
    record(benchmark, size)


@pytest.mark.parametrize("size", list(SIZES))
def test_pickle5_through_a_pipe(benchmark, size, consumer):
    data = data_of(SIZES[size])
    expected = float(data.sum())

    def handoff():
        buffers: list[pickle.PickleBuffer] = []
        header = pickle.dumps(data, protocol=5, buffer_callback=buffers.append)
        raw = buffers[0].raw()
        reply = _ask_async(consumer, op="pickle", fd=consumer.pipe_read, header=len(header),
                           nbytes=raw.nbytes)
        os.write(consumer.pipe_write, header)
        view, sent = raw.cast("B"), 0
        while sent < view.nbytes:
            sent += os.write(consumer.pipe_write, view[sent:sent + (1 << 20)])
        return reply()

    total = benchmark.pedantic(handoff, rounds=rounds_for(SIZES[size]), warmup_rounds=1)
    assert total == pytest.approx(expected)
    record(benchmark, size)


def _ask_async(consumer: Consumer, **cmd: object):
    """Send a command now, read the answer later (the pipe must be fed meanwhile)."""
    assert consumer.proc.stdin is not None and consumer.proc.stdout is not None
    consumer.proc.stdin.write(json.dumps(cmd) + "\n")
    consumer.proc.stdin.flush()
    return lambda: json.loads(consumer.proc.stdout.readline())["sum"]


@pytest.mark.parametrize("size", list(SIZES))
def test_arrow_ipc_file_on_dev_shm(benchmark, size, consumer):
    data = data_of(SIZES[size])
    expected = float(data.sum())
    directory = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    paths: list[str] = []

    def cleanup():
        for path in paths:
            os.unlink(path)
        paths.clear()

    def handoff():
        path = os.path.join(directory, f"fluidv-bench-{uuid.uuid4().hex}.arrow")
        paths.append(path)
        table = pa.table({"x": data})
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        return consumer.ask(op="arrow", path=path)

    total = benchmark.pedantic(handoff, setup=lambda: cleanup() or ((), {}),
                               rounds=rounds_for(SIZES[size]), warmup_rounds=1)
    cleanup()
    assert total == pytest.approx(expected)
    record(benchmark, size)


COLD_SIZES = ["64MiB", "1GiB"]


@pytest.mark.parametrize("channel", ["objects_put", "objects_allocate", "plain_vineyard"])
@pytest.mark.parametrize("size", COLD_SIZES)
def test_cold_handoff(benchmark, size, channel, tmp_path):
    """A fresh daemon and a fresh consumer for every round: nothing is faulted in yet."""
    import objects

    data = data_of(SIZES[size])
    expected = float(data.sum())
    live: list = []

    def teardown():
        while live:
            item = live.pop()
            if isinstance(item, LocalCluster):
                stop_for_sure(item)
            else:
                item.close()

    def setup():
        teardown()
        local = LocalCluster(nodes=1, size="3Gi", workdir=str(tmp_path / uuid.uuid4().hex[:8]))
        live.append(local)
        local.start()
        worker = Consumer()
        live.append(worker)
        worker.ask(op="import")  # the consumer's imports are not part of the handoff
        store = objects.connect(local.nodes[0].socket)
        live.append(store)
        allocation = None
        if channel == "objects_allocate":
            allocation = store.allocate(data.shape, data.dtype, "cold")
            np.copyto(allocation.__enter__(), data)
        return (local.nodes[0].socket, store, worker, allocation), {}

    def handoff(socket, store, worker, allocation):
        if channel == "objects_put":
            store.put(data, "cold")
            return worker.ask(op="objects", socket=socket, name="cold")
        if channel == "objects_allocate":
            allocation.__exit__(None, None, None)
            return worker.ask(op="objects", socket=socket, name="cold")
        oid = store.client.put(data, persist=True)
        store.client.put_name(oid, "cold")
        return worker.ask(op="vineyard", socket=socket, name="cold")

    try:
        total = benchmark.pedantic(handoff, setup=setup, rounds=2)
    finally:
        teardown()
    assert total == pytest.approx(expected)
    record(benchmark, size)


@pytest.fixture(scope="module")
def ray_consumer():
    """Ray's object store as the channel: this process puts, an actor process sums."""
    ray = pytest.importorskip("ray", reason="Ray is the bench extra's baseline: pip install -e '.[bench]'")
    ray.init(num_cpus=1, include_dashboard=False, object_store_memory=3 << 30,
             _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
    try:
        @ray.remote
        class Summer:
            def sum(self, value) -> float:
                return float(value.sum())

        actor = Summer.remote()
        ray.get(actor.sum.remote(np.zeros(1)))  # the actor's process is up before timing
        yield ray, actor
    finally:
        ray.shutdown()


@pytest.mark.parametrize("size", list(SIZES))
def test_ray_put_get(benchmark, size, ray_consumer):
    ray, actor = ray_consumer
    data = data_of(SIZES[size])
    expected = float(data.sum())

    def handoff():
        ref = ray.put(data)
        return ray.get(actor.sum.remote(ref))

    total = benchmark.pedantic(handoff, rounds=rounds_for(SIZES[size]), warmup_rounds=1)
    assert total == pytest.approx(expected)
    record(benchmark, size)
