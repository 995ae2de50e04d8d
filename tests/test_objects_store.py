"""The store's behaviour: zero copy, names, labels, errors, other processes, full nodes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import objects
from support.optional import needs_vineyard_client, vineyard_client_installed
from support.reading import memory_used, run_python
def in_shared_memory(store, address: int) -> bool:
    """True when ``address`` lies in a mapping of a vineyardd's shared memory (its memfd).

    vineyard's own is_shared_memory only recognises the first byte of a blob.
    """
    del store
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, *_rest = line.split()
            low, high = (int(x, 16) for x in span.split("-"))
            if low <= address < high:
                return "vineyard" in line
    return False


def test_numpy_reads_are_read_only_views_of_shared_memory(stores):
    store = stores["node-0"]
    got = store.get(store.put(np.arange(1 << 16, dtype=np.float64), "zc/array"))
    assert in_shared_memory(store, got.ctypes.data)
    assert not got.flags.writeable
    with pytest.raises(ValueError):
        got[0] = 1.0


def test_arrow_and_pandas_numeric_buffers_alias_shared_memory(stores):
    store = stores["node-1"]
    table = store.get(store.put(pa.table({"x": np.arange(10000.0), "s": ["a"] * 10000}), "zc/table"))
    for column in table.columns:
        for buffer in column.chunk(0).buffers():
            if buffer is not None and buffer.size:
                assert in_shared_memory(store, buffer.address)
    frame = store.get(store.put(pd.DataFrame({"x": np.arange(10000.0), "y": np.arange(10000)}), "zc/df"))
    assert in_shared_memory(store, frame["x"].to_numpy().ctypes.data)
    assert in_shared_memory(store, frame["y"].to_numpy().ctypes.data)


def test_remote_object_is_migrated_then_read_in_place(stores):
    value = np.random.default_rng(0).random(1 << 15)
    ref = stores["node-0"].put(value, "zc/remote")
    reader = stores["node-2"]
    got = reader.get("zc/remote")
    np.testing.assert_array_equal(got, value)
    assert in_shared_memory(reader, got.ctypes.data)
    assert reader.info("zc/remote").node == "node-0", "the named object stays where it was made"
    assert ref.node == "node-0"


def test_refs_describe_objects(stores):
    ref = stores["node-1"].put(np.zeros((4, 4), np.float32), "refs/a", labels={"run": "r1"})
    assert ref.name == "refs/a" and ref.node == "node-1" and ref.nbytes == 64
    assert ref.typename == "fluidv::NDArray" and ref.labels == {"run": "r1"}
    assert ref.id.startswith("i") and len(ref.id) == 17  # small: held inline by the directory
    for key in (ref, "refs/a", ref.id):
        info = stores["node-2"].info(key)
        assert info.id == ref.id and info.labels == {"run": "r1"} and info.node == "node-1"
    assert stores["node-0"].get(ref.id).shape == (4, 4)


def test_names_are_exclusive_unless_replaced(stores):
    store = stores["node-0"]
    first = store.put(np.ones(3), "names/x")
    with pytest.raises(objects.ObjectExists, match="'names/x' already exists; pass replace=True"):
        stores["node-2"].put(np.zeros(3), "names/x")
    second = store.put(np.zeros(3), "names/x", replace=True)
    np.testing.assert_array_equal(stores["node-1"].get("names/x"), np.zeros(3))
    assert second.id != first.id
    assert not store.exists(first.id), "the replaced object is deleted"


def test_list_filters_by_prefix_and_labels(stores):
    store = stores["node-2"]
    store.put(np.ones(1), "list/a", labels={"run": "1", "stage": "x"})
    store.put(np.ones(1), "list/b", labels={"run": "1"})
    store.put(np.ones(1), "other/c", labels={"run": "1"})
    assert [r.name for r in store.list(prefix="list/")] == ["list/a", "list/b"]
    assert [r.name for r in stores["node-0"].list(labels={"run": "1", "stage": "x"})] == ["list/a"]
    assert {"list/a", "list/b", "other/c"} <= {r.name for r in store.list(labels={"run": "1"})}


def test_delete_and_delete_many(stores):
    store = stores["node-0"]
    store.put(np.ones(1), "del/keep", labels={"run": "keep"})
    for i in range(3):
        store.put(np.ones(1), f"del/tmp{i}", labels={"run": "tmp"})
    assert store.delete_many(labels={"run": "tmp"}) == 3
    assert [r.name for r in store.list(prefix="del/")] == ["del/keep"]
    with pytest.raises(objects.ObjectsError, match="needs labels= or prefix="):
        store.delete_many()
    stores["node-1"].delete("del/keep")
    assert not store.exists("del/keep")
    with pytest.raises(objects.ObjectNotFound, match="no object named 'del/keep'"):
        store.get("del/keep")
    with pytest.raises(objects.ObjectNotFound):
        store.delete("del/keep")


def test_unknown_objects(stores):
    store = stores["node-0"]
    with pytest.raises(objects.ObjectNotFound, match="no object named 'nope'"):
        store.get("nope")
    with pytest.raises(objects.ObjectNotFound):
        store.info("o0000000000000abc")
    assert not store.exists("nope") and not store.exists("o0000000000000abc")
    unnamed = stores["node-1"].put(np.ones(2))
    with pytest.raises(objects.ObjectNotFound, match="unnamed .* put it with a name"):
        store.get(unnamed)


def test_bad_names_and_labels(stores):
    store = stores["node-0"]
    for name in ("", " padded ", "__fluidv/x", "o0123456789abcdef"):
        with pytest.raises(objects.ObjectsError):
            store.put(np.ones(1), name)
    with pytest.raises(objects.ObjectsError, match="labels must map"):
        store.put(np.ones(1), "ok", labels={"run": 1})


def test_allocate_publishes_in_place(stores):
    store = stores["node-1"]
    allocation = store.allocate((256, 4), "float32", "alloc/a", labels={"kind": "alloc"})
    with allocation as out:
        assert out.flags.writeable and in_shared_memory(store, out.ctypes.data)
        out[:] = np.arange(1024, dtype=np.float32).reshape(256, 4)
    assert allocation.ref.name == "alloc/a" and allocation.ref.labels == {"kind": "alloc"}
    got = store.get("alloc/a")
    assert in_shared_memory(store, got.ctypes.data), "read in place"
    elsewhere = stores["node-0"].get("alloc/a")
    np.testing.assert_array_equal(elsewhere, np.arange(1024, dtype=np.float32).reshape(256, 4))
    assert stores["node-0"].is_shared_memory(elsewhere.ctypes.data), "received into node-0's memory"
    assert not store.is_shared_memory(np.ones(4).ctypes.data)
    with store.allocate((3, 2), "int64", "alloc/f", order="F") as out:
        out[:] = [[1, 2], [3, 4], [5, 6]]
    assert store.get("alloc/f").flags.f_contiguous


def test_allocate_with_an_exception_publishes_nothing(stores):
    store = stores["node-2"]
    before = memory_used(store)
    with pytest.raises(RuntimeError, match="boom"):
        with store.allocate((1 << 20,), "float64", "alloc/broken") as out:
            out[:10] = 1
            raise RuntimeError("boom")
    assert not store.exists("alloc/broken")
    assert memory_used(store) == before, "the memory is released"


def test_allocate_then_crash_publishes_nothing(stores, shared_cluster):
    # nothing half-written becomes visible (its memory comes back: test_pinned_reads)
    store = stores["node-0"]
    result = run_python("""
        import os, objects
        store = objects.connect()
        with store.allocate((1 << 20,), "float64", "alloc/crashed") as out:
            out[:] = 1
            os._exit(3)
    """, shared_cluster.node("node-0").socket)
    assert result.returncode == 3, result.stderr
    assert not store.exists("alloc/crashed")
    assert not stores["node-1"].exists("alloc/crashed")


def test_another_process_reads_what_this_one_wrote_and_back(stores, shared_cluster):
    stores["node-0"].put({"x": np.arange(1 << 12, dtype=np.float64), "t": pa.table({"a": [1, 2]})}, "proc/in")
    result = run_python("""
        import numpy as np, objects
        store = objects.connect()
        value = store.get("proc/in")
        assert store.is_shared_memory(value["x"].ctypes.data)
        store.put(value["x"] * 2, "proc/out")
        print(value["t"].num_rows)
    """, shared_cluster.node("node-2").socket)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
    np.testing.assert_array_equal(stores["node-0"].get("proc/out"), np.arange(1 << 12) * 2.0)


def test_full_node_raises_store_full_and_moves_nothing(make_cluster):
    local = make_cluster(nodes=2, size="64Mi")
    full, other = (objects.connect(n.socket) for n in local.nodes)
    try:
        full.put(np.ones(4 << 20, dtype=np.uint8), "full/filler")
        before = [memory_used(full), memory_used(other)]
        big = np.ones(80 << 20, dtype=np.uint8)
        with pytest.raises(objects.StoreFull, match=r"node node-0 cannot hold 83886080 bytes: \d+ of 67108864 bytes are free"):
            full.put(big, "full/big")
        with pytest.raises(objects.StoreFull, match="node node-0"):
            with full.allocate((80 << 20,), "uint8"):
                pass
        assert [memory_used(full), memory_used(other)] == before, "no data moved to node-1"
        assert not other.exists("full/big") and not full.exists("full/big")
        assert full.instance_id == local.nodes[0].instance_id, "still on node-0"
    finally:
        full.close()
        other.close()


class TestConnect:
    @pytest.fixture(autouse=True)
    def clean_env(self, monkeypatch):
        for var in ("VINEYARD_IPC_SOCKET", "VINEYARD_CONFIG", "VINEYARD_RPC_ENDPOINT"):
            monkeypatch.delenv(var, raising=False)

    @pytest.fixture
    def vineyard_connects(self, monkeypatch) -> list[tuple]:
        """Every call of vineyard's own connect (which retries for about 11 s), recorded
        (none where vineyard's client is not installed)."""
        calls: list[tuple] = []
        if not vineyard_client_installed():
            return calls
        import vineyard

        real = vineyard.connect

        def recorded(*args, **kwargs):
            calls.append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(vineyard, "connect", recorded)
        return calls

    def test_nothing_configured(self, vineyard_connects):
        with pytest.raises(objects.StoreUnavailable, match="VINEYARD_IPC_SOCKET.*fluidv cluster up"):
            objects.connect()
        assert vineyard_connects == [], "it fails before trying any node"

    def test_missing_socket_fails_at_once(self, tmp_path, vineyard_connects):
        with pytest.raises(objects.StoreUnavailable, match=r"absent.sock.*socket missing"):
            objects.connect(str(tmp_path / "absent.sock"))
        assert vineyard_connects == [], "no 11 s retry loop: vineyard's connect is never called"

    def test_environment_socket(self, monkeypatch, shared_cluster):
        monkeypatch.setenv("VINEYARD_IPC_SOCKET", shared_cluster.node("node-1").socket)
        with objects.connect() as store:
            assert store.node == "node-1" and store.is_ipc

    @needs_vineyard_client  # Vineyard's RPC is vineyard's own client
    def test_config_file_prefers_ipc_then_falls_back_to_rpc(self, monkeypatch, tmp_path, shared_cluster, caplog):
        node = shared_cluster.node("node-2")
        good = tmp_path / "good.yaml"
        good.write_text(f"Vineyard:\n  IPCSocket: {node.socket}\n  RPCEndpoint: {node.rpc_endpoint}\n")
        monkeypatch.setenv("VINEYARD_CONFIG", str(good))
        with objects.connect() as store:
            assert store.is_ipc and store.node == "node-2"
        fallback = tmp_path / "fallback.yaml"
        fallback.write_text(f"Vineyard:\n  IPCSocket: {tmp_path}/gone.sock\n  RPCEndpoint: {node.rpc_endpoint}\n")
        with objects.connect(config=str(fallback)) as store:
            assert not store.is_ipc and store.node == "node-2"
            # the store and a warning say why it is not zero-copy
            assert store.target.passed_over and f"{tmp_path}/gone.sock" in store.target.passed_over[0]
            assert "passed over: IPC" in store.target.describe()
        assert any("passing over IPC" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)

    @needs_vineyard_client
    def test_rpc_store_reads_and_refuses_writes_clearly(self, stores, shared_cluster, tmp_path):
        stores["node-0"].put(np.arange(6.0), "rpc/a")
        config = tmp_path / "vineyard-config.yaml"  # what a bridge on a node without a worker writes
        config.write_text(f"Vineyard:\n  RPCEndpoint: {shared_cluster.node('node-0').rpc_endpoint}\n"
                          f"  EtcdEndpoint: {shared_cluster.etcd_endpoint}\n")
        with objects.connect(config=str(config)) as store:
            np.testing.assert_array_equal(store.get("rpc/a"), np.arange(6.0))
            with pytest.raises(objects.ObjectsError, match="writing needs an IPC connection"):
                store.put(np.ones(1), "rpc/b")

    def test_nothing_listening_on_rpc(self):
        with pytest.raises(objects.StoreUnavailable, match="RPC 127.0.0.1:1 .*refused"):
            objects.connect(endpoint="127.0.0.1:1")

    def test_bad_config(self, tmp_path):
        bad = tmp_path / "bad.yaml"
        bad.write_text("Vineyard: {}\n")
        with pytest.raises(objects.StoreUnavailable, match="names neither IPCSocket nor RPCEndpoint"):
            objects.connect(config=str(bad))
        with pytest.raises(objects.StoreUnavailable, match="cannot read Vineyard config"):
            objects.connect(config=str(tmp_path / "missing.yaml"))


def test_errors_share_one_base():
    for error in (objects.StoreUnavailable, objects.ObjectNotFound, objects.ObjectExists,
                  objects.StoreFull, objects.UnsupportedType, objects.VineyardClientMissing):
        assert issubclass(error, objects.ObjectsError)


def test_the_store_needs_no_vineyard_client(shared_cluster):
    """Named and unnamed values, allocations, streams, listing and deletes speak
    vineyardd's protocol through the project's own connection: vineyard's Python package
    is never imported and no watchdog process starts. An unnamed value is a Vineyard
    object of its node all the same, which vineyard's own client reads."""
    result = run_python("""
        import os, sys
        import numpy as np, pyarrow as pa, objects
        store = objects.connect()
        store.put(np.arange(1 << 18), "novineyard/array")
        store.put(pa.table({"x": np.arange(5000.0)}), "novineyard/table")
        with store.allocate((1 << 16,), "float32", "novineyard/alloc") as out:
            out[:] = 2
        with store.open_writer("novineyard/stream") as writer:
            writer.write(np.ones(1 << 14))
        assert store.get("novineyard/array")[-1] == (1 << 18) - 1
        assert store.get("novineyard/table").num_rows == 5000
        assert float(store.get("novineyard/alloc").sum()) == 2 * (1 << 16)
        assert sum(len(chunk) for chunk in store.open_reader("novineyard/stream")) == 1 << 14
        assert len(store.list(prefix="novineyard/")) == 3
        store.delete_many(prefix="novineyard/")
        store.delete_stream("novineyard/stream")
        unnamed = store.put({"w": np.arange(1 << 16), "b": np.ones(3)}, labels={"k": "v"})
        got = store.get(unnamed.id)
        assert got["w"][-1] == (1 << 16) - 1 and store.info(unnamed).labels == {"k": "v"}
        assert store.get(unnamed)["b"].sum() == 3
        allocation = store.allocate(1 << 12, "int32")
        with allocation as out:
            out[:] = 7
        assert store.get(allocation.ref).sum() == 7 << 12 and allocation.ref.id.startswith("o")
        store.delete(allocation.ref)
        children = open(f"/proc/self/task/{os.getpid()}/children").read().split()
        print("vineyard" in sys.modules, len(children), unnamed.id)
    """, shared_cluster.node("node-1").socket)
    assert result.returncode == 0, result.stderr
    imported, watchdogs, object_id = result.stdout.split()
    assert (imported, watchdogs) == ("False", "0")
    store = objects.connect(shared_cluster.node("node-1").socket)
    try:
        if vineyard_client_installed():
            import vineyard

            meta = store.client.get_meta(vineyard.ObjectID(object_id))  # vineyard's own client
            assert meta.typename == "fluidv::Nested" and meta.instance_id == store.instance_id
        store.delete(object_id)
        assert not store.exists(object_id)
    finally:
        store.close()


@needs_vineyard_client  # to write an object of its own; without it installed at all, see tests/test_pythons.py
def test_without_vineyards_client_installed_only_its_own_objects_need_it(shared_cluster, tmp_path):
    """With vineyard's Python package not importable (as on CPython 3.13 and later), values
    cross nodes through the blob servers, the cluster's status is read, and only an object
    that vineyard's own client wrote says that it needs the ``vineyard`` extra; an unknown
    id is still ObjectNotFound."""
    import vineyard

    writer = vineyard.connect(shared_cluster.node("node-0").socket)
    try:
        foreign = writer.put(np.arange(8.0))
    finally:
        writer.close()
    result = run_python(f"""
        import sys
        sys.modules["vineyard"] = None  # import vineyard raises ImportError, as when it is not installed
        import numpy as np, objects
        from vineyard_runtime.local import LocalCluster
        from vineyard_runtime.errors import VineyardClientMissing
        cluster = LocalCluster.attach({shared_cluster.workdir!r})
        assert all(node.health == "healthy" and node.memory_limit for node in cluster.status())
        with objects.connect(workdir=cluster.workdir, node="node-0") as here, \\
                objects.connect(workdir=cluster.workdir, node="node-2") as there:
            here.put(np.arange(1 << 20), "noclient/big")
            assert there.get("noclient/big")[-1] == (1 << 20) - 1  # through node-0's blob server
            try:
                here.get({int(foreign)})
            except objects.VineyardClientMissing as exc:
                assert "pip install 'fluid-vineyard[vineyard]'" in str(exc), exc
            else:
                raise AssertionError("an object of vineyard's own client was read without it")
            try:
                here.get(12345)
            except objects.ObjectNotFound:
                pass
            here.delete("noclient/big")
        try:
            cluster.client("node-1")
        except VineyardClientMissing as exc:
            print("missing:", exc)
    """, shared_cluster.node("node-0").socket)
    assert result.returncode == 0, result.stderr
    assert "missing: this needs vineyard's own Python client" in result.stdout
