"""Zero-copy reads pin what they show, and nothing a dead process held stays allocated.

vineyardd frees a deleted blob at once and reuses its memory; these tests delete,
replace and overwrite objects under live views (in another process and in this one),
kill readers and writers, and check that a view never changes and that the memory comes
back once nobody holds it.
"""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import objects
from support.reading import Holder, memory_used, run_python
from support.waiting import wait_for
SIZE = 1 << 18  # 2 MiB of float64: shared memory, not inline

def _churn(store, name: str, how: str) -> None:
    """Take ``name`` away from its readers (``how``) and fill the node with other bytes."""
    if how == "replace":
        store.put(np.full(SIZE, -1.0), name, replace=True)
    else:
        store.delete(name)
    for i in range(4):  # what vineyard would hand out next: the freed memory
        store.put(np.full(SIZE, -1.0), f"{name}-other{i}")


@pytest.mark.parametrize("how", ["delete", "replace"])
@pytest.mark.parametrize("kind", ["array", "table"])
def test_a_view_in_another_process_never_changes_and_its_memory_comes_back(stores, shared_cluster, how, kind):
    store = stores["node-0"]
    name = f"pinned/{how}-{kind}"
    value = np.full(SIZE, 7.0) if kind == "array" else pa.table({"x": np.full(SIZE, 7.0)})
    before = memory_used(store)
    store.put(value, name)
    holder = Holder(name, socket=shared_cluster.node("node-0").socket)
    try:
        _churn(store, name, how)
        assert holder.look() == ["7.0", "7.0"], "the reader's view kept its bytes"
        assert store.holds.pending(), "the old object waits for its reader"
        holder.let_go()
    finally:
        holder.kill()
        holder.wait()
    store.delete_many(prefix=name)
    wait_for(lambda: memory_used(store) == before and not store.holds.pending(), timeout=10,
             message="the memory came back once the reader let go")


def test_a_view_in_this_process_holds_until_its_last_slice_dies(stores):
    store = stores["node-1"]
    before = memory_used(store)
    store.put(np.arange(SIZE, dtype=np.float64), "pinned/here")
    view = store.get("pinned/here")
    part = view[10:20]
    table_view = pa.py_buffer(store.get("pinned/here"))  # a second read, an Arrow buffer over it
    del view
    _churn(store, "pinned/here", "delete")
    np.testing.assert_array_equal(part, np.arange(10, 20, dtype=np.float64))
    assert np.frombuffer(table_view, np.float64)[SIZE - 1] == SIZE - 1
    assert memory_used(store) > before + 4 * SIZE * 8, "still held"
    del part
    assert store.holds.pending() == [store.holds.pending()[0]], "the buffer still holds it"
    del table_view  # the last view: this process frees it at once, no sweeper needed
    assert not store.holds.pending()
    store.delete_many(prefix="pinned/here")
    assert memory_used(store) == before


def test_a_stream_is_pinned_once_by_its_reader_and_freed_when_its_last_chunk_dies(stores):
    """A reader on the producer's node pins the stream once (not a hold file per chunk);
    a delete of the stream while chunks are still viewed frees their memory only after
    the last view dies, and then all of it."""
    store = stores["node-1"]
    before = memory_used(store)
    pins = lambda: sorted(f for f in os.listdir(store.holds.path) if f.endswith(".pin"))  # noqa: E731
    already = pins()
    with store.open_writer("pinned/stream") as writer:
        for i in range(40):
            writer.write(np.full(1 << 13, i, dtype=np.float64))  # 64 KiB each: blobs, not inline
    reader = iter(store.open_reader("pinned/stream", timeout=30))
    kept = [next(reader) for _ in range(20)]
    assert len(pins()) == len(already) + 1, "one pin for the stream, whatever its chunks"
    rest = list(reader)
    assert len(rest) == 20 and [int(c[0]) for c in kept + rest] == list(range(40))
    del rest
    assert store.delete_stream("pinned/stream") == 42  # header, 40 chunks, end
    assert all(int(c[-1]) == i for i, c in enumerate(kept)), "the chunks still viewed are intact"
    assert memory_used(store) > before, "their memory waits for them"
    del kept
    assert memory_used(store) == before and not store.holds.pending(), "the last view freed it, no sweeper needed"
    assert pins() == already


def test_a_killed_reader_pins_nothing(stores, shared_cluster):
    store = stores["node-2"]
    before = memory_used(store)
    store.put(np.full(SIZE, 7.0), "pinned/killed")
    holder = Holder("pinned/killed", socket=shared_cluster.node("node-2").socket)
    try:
        store.delete("pinned/killed")
        assert memory_used(store) > before, "held by the reader"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        holder.kill()
        holder.wait()
    wait_for(lambda: memory_used(store) == before, timeout=10, message="the sweeper freed it")


def test_a_reader_on_another_node_keeps_its_copy_while_the_name_is_deleted(stores, shared_cluster):
    writer, reader_store = stores["node-0"], stores["node-1"]
    before = [memory_used(writer), memory_used(reader_store)]
    writer.put(np.full(SIZE, 7.0), "pinned/remote")
    holder = Holder("pinned/remote", socket=shared_cluster.node("node-1").socket)  # node-1 receives a copy
    try:
        _churn(writer, "pinned/remote", "delete")
        for i in range(4):
            reader_store.put(np.full(SIZE, -1.0), f"pinned/remote-mine{i}")  # node-1 reuses freed memory
        assert holder.look() == ["7.0", "7.0"]
        holder.let_go()
    finally:
        holder.kill()
        holder.wait()
    writer.delete_many(prefix="pinned/remote")
    wait_for(lambda: [memory_used(writer), memory_used(reader_store)] == before, timeout=10,
             message="both nodes freed the object and the copy")


@pytest.mark.parametrize("write", ["allocate", "put"])
def test_the_memory_of_a_writer_killed_mid_write_comes_back(stores, shared_cluster, write):
    store = stores["node-0"]
    before = memory_used(store)
    code = {
        "allocate": """
            with store.allocate((1 << 22,), "float64", "crash/alloc") as out:
                out[:] = 1
                os._exit(3)
        """,
        "put": """
            import numpy as np
            from objects.layout import BlobContext
            BlobContext.seal = lambda self, builder: os._exit(3)  # dies with its blob filled, unsealed
            store.put(np.ones(1 << 22), "crash/put")
        """,
    }[write]
    result = run_python("import os, objects\nstore = objects.connect()\n" + textwrap.dedent(code),
                        shared_cluster.node("node-0").socket)
    assert result.returncode == 3, result.stderr
    assert not store.exists(f"crash/{write}")
    wait_for(lambda: memory_used(store) == before, timeout=10, message="the sweeper reclaimed the dead write")


def test_a_stream_writer_killed_mid_stream_keeps_what_it_published_and_frees_the_rest(stores, shared_cluster):
    """A stream writer makes its chunks' blobs ahead; killed, the sweeper frees those it
    had not published, the chunks it published stay readable, and deleting the stream
    gives back the rest."""
    store = stores["node-0"]
    before = memory_used(store)
    result = run_python("""
        import os, time, numpy as np, objects
        store = objects.connect()
        writer = store.open_writer("crash/stream")
        for i in range(40):
            writer.write(np.full(1 << 13, i, dtype=np.float64))  # 64 KiB: blobs made ahead, 16 at a time
        while writer._flushed < 40:  # every one of them published
            time.sleep(0.01)
        writer._directory.etcd.put = lambda *args: time.sleep(3600)  # the next never is
        writer.write(np.full(1 << 13, 40, dtype=np.float64))
        os._exit(3)
    """, shared_cluster.node("node-0").socket)
    assert result.returncode == 3, result.stderr
    wait_for(lambda: not [f for f in os.listdir(store.holds.path) if f.endswith(".writing")], timeout=30,
             message="the sweeper reclaimed the dead writer's record")
    reader = store.open_reader("crash/stream", timeout=30)
    with pytest.raises(objects.StreamFailed, match="exited without closing it after 40 chunk"):
        for i, chunk in enumerate(reader):
            assert int(chunk[0]) == i and int(chunk[-1]) == i, "a published chunk is intact"
    del chunk
    assert memory_used(store) > before, "the published chunks are kept"
    store.delete_stream("crash/stream")
    wait_for(lambda: memory_used(store) == before, timeout=30, message="the stream and the spares came back")


def test_a_stream_writer_whose_records_are_refused_frees_what_it_did_not_publish(stores, shared_cluster):
    """The directory refuses a stream's chunk records (etcd gone mid-stream): the writer
    raises, its chunks' blobs (made, some ahead, and never published) are freed when it
    ends, and it leaves no record for the sweeper."""
    store = stores["node-0"]
    before = memory_used(store)
    result = run_python("""
        import os, numpy as np, objects
        from objects.directory import EtcdUnavailable
        store = objects.connect()

        def refuse(*args):
            raise EtcdUnavailable("etcd refused the record")

        try:
            with store.open_writer("refused/stream") as writer:
                writer._directory.etcd.put = refuse
                for i in range(40):
                    writer.write(np.full(1 << 13, i, dtype=np.float64))  # 64 KiB: blobs made ahead
        except objects.StoreUnavailable as exc:
            print("raised:", exc)
        print("records:", [f for f in os.listdir(store.holds.path) if f.endswith(".writing")])
    """, shared_cluster.node("node-0").socket)
    assert result.returncode == 0, result.stderr
    assert "raised:" in result.stdout and "etcd refused the record" in result.stdout, result.stdout
    assert "records: []" in result.stdout, result.stdout
    assert memory_used(store) == before, "nothing unpublished is left allocated"
    store.delete_stream("refused/stream")


def test_a_long_writers_record_keeps_only_what_it_has_not_published(tmp_path):
    """A stream's record lists every blob it makes and says which it published; it is
    written anew once long, and a reclaim frees only what was never published."""
    from vineyard_runtime.node.holds import COMPACT_LINES, NodeHolds, Writing

    record = NodeHolds(str(tmp_path)).writing()
    made = [f"o{i:016x}" for i in range(3 * COMPACT_LINES)]
    odd, even = made[1::2], made[2::2]
    published_one_by_one = set(odd)
    for blob in made:
        record.add(blob)
        if blob in published_one_by_one:
            record.published([blob])
    record.published(even[:-2])  # then most of the rest at once
    left = [made[0], *even[-2:]]
    assert len(Path(record.path).read_text().splitlines()) < COMPACT_LINES + 10, "written anew, not grown without end"
    freed: list[str] = []
    os.close(record._fd)  # the writer dies: its lock goes with its descriptor
    assert Writing.reclaim(record.path, freed.extend, lambda name, entry: False) == 1
    assert sorted(freed) == sorted(left)


def test_a_writer_killed_right_after_naming_keeps_its_object(stores, shared_cluster):
    result = run_python("""
        import os, numpy as np, objects
        from vineyard_runtime.node import holds
        holds.Writing.done = lambda self: None  # dies before forgetting its record
        store = objects.connect()
        store.put(np.full(1 << 18, 5.0), "crash/named")
        os._exit(3)
    """, shared_cluster.node("node-1").socket)
    assert result.returncode == 3, result.stderr
    store = stores["node-1"]
    wait_for(lambda: not [f for f in os.listdir(store.holds.path) if f.endswith(".writing")], timeout=10,
             message="the sweeper looked at the dead writer's record")
    assert float(store.get("crash/named").max()) == 5.0, "a named write is kept"
    store.delete("crash/named")


def test_holds_and_the_workdir_are_not_world_writable(stores, shared_cluster):
    for path in (stores["node-0"].holds.path, shared_cluster.workdir, os.path.dirname(shared_cluster.nodes[0].socket)):
        assert os.stat(path).st_mode & 0o007 == 0, path
