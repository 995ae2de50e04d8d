"""Streams of Arrow record batches or numpy chunks between a producer and consumers.

A stream ``s`` is a few records in the object directory, under
``<prefix>/fluidv/streams/s/``: ``h`` (who writes it), chunk records ``c<n>`` and ``e``,
the end marker saying whether the producer finished or failed. A chunk record holds
the entries of chunks ``n``, ``n+1``, ...: each chunk inline when small, else blobs
in the producer node's shared memory, with the chunk's layout in its entry. Readers watch that prefix, so they wake when a
record is committed instead of polling. The writer puts whatever chunks are waiting
into one record, so a fast producer is not held to one etcd round trip per chunk and
a slow one still publishes each chunk at once. The chunks of a stream share one hold
(the header's ``hold``, see :mod:`vineyard_runtime.node.holds`): a reader on their node
pins it once, and deleting the stream frees them all when its last reader lets go.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from objects.directory import Entry, EtcdUnavailable
from objects.errors import ObjectExists, ObjectNotFound, ObjectsError, StoreUnavailable, StreamFailed
from objects.spares import Spares
from vineyard_runtime.etcd_client import absent, delete_op, put_op
from vineyard_runtime.node.holds import Pin
from vineyard_runtime.plumbing.processes import is_alive
from vineyard_runtime.object_ids import object_id, object_name

if TYPE_CHECKING:
    from objects.reader import Reader
    from objects.writer import Writer

HEADER, END, CHUNK = "h", "e", "c"
#: Limits of one chunk record (etcd takes requests of up to 1.5 MiB).
BATCH_CHUNKS, BATCH_BYTES = 1000, 256 << 10
#: Chunks a writer may have waiting for their commit before ``write`` blocks.
MAX_PENDING = 1000
#: How many chunks' blobs a reader fetches in one call (to its node, or to another's blob server).
PREFETCH_CHUNKS = 64
#: How often a waiting reader checks that the producer still lives.
LIVENESS_EVERY = 0.5


def _chunk(index: int) -> str:
    return f"{CHUNK}{index:010d}"


class StreamWriter:
    """Publishes chunks of one stream; ``close()`` ends it, an exception fails it."""

    def __init__(self, writer: "Writer", name: str, labels: dict[str, str]) -> None:
        store = writer.conn
        self._writer, self._store, self.name, self._labels = writer, store, name, labels
        self._directory = store.directory
        self.count = 0
        self.closed = False
        self._pending: list[tuple[str, list[str]]] = []  # chunk entries (and blobs) waiting for their record
        self._flushed = 0  # chunks committed
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        #: the key readers pin and deletes free under for all of its chunks (one pin a reader)
        self._hold = f"s{uuid.uuid4().hex}"
        header = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "node": store.node,
                             "hold": self._hold})
        key = self._directory.stream_key(name, HEADER)
        if not store.directory_call(lambda: self._directory.etcd.txn([absent(key)], [put_op(key, header)])[0]):
            raise ObjectExists(
                f"a stream named {name!r} already exists; delete it with "
                "store.delete_stream() or choose another name"
            )
        # the blobs made for chunks, made ahead (a chunk's size mostly repeats) and recorded
        # until published, so that a writer that dies leaves nothing unpublished behind
        self._record = store.holds.writing() if store.holds is not None else None
        self._spares = Spares(store.ipc, self._record) if store.is_ipc else None
        self._flusher = threading.Thread(target=self._flush_loop, name=f"stream-{name}", daemon=True)
        self._flusher.start()

    def write(self, chunk: Any) -> None:
        """Publish one chunk: a pyarrow RecordBatch or Table, or a numpy array."""
        if self.closed:
            raise ObjectsError(f"stream {self.name!r} is closed")
        if not isinstance(chunk, np.ndarray) and type(chunk).__module__.split(".")[0] != "pyarrow":
            raise ObjectsError(
                f"stream chunks are Arrow record batches/tables or numpy arrays, got {type(chunk).__name__}"
            )
        self._raise_error()  # before making blobs for it
        with self._store.bounded("a stream write", watchdog=False):  # blobs through the store's ipc
            entry = self._writer.encode_entry(chunk, self._labels, hold=self._hold, spares=self._spares)
        with self._changed:
            while len(self._pending) >= MAX_PENDING and self._error is None:
                self._changed.wait()
            self._raise_error()
            self._pending.append((entry.to_json(), entry.blobs))
            self.count += 1
            if len(self._pending) == 1:
                self._changed.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise StoreUnavailable(f"stream {self.name!r} could not publish chunks: {self._error}")

    def _flush_loop(self) -> None:
        while True:
            with self._changed:
                while not self._pending and not self.closed:
                    self._changed.wait()
                if not self._pending:
                    return
                first, size, taken = self._flushed, 0, 0
                for body, _ in self._pending:
                    if taken and (taken >= BATCH_CHUNKS or size + len(body) > BATCH_BYTES):
                        break
                    size += len(body)
                    taken += 1
                bodies = [body for body, _ in self._pending[:taken]]
                blobs = [blob for _, ids in self._pending[:taken] for blob in ids]
            key = self._directory.stream_key(self.name, _chunk(first))
            try:
                self._store.flush_seals()  # a record names blobs readers must find sealed
                self._directory.etcd.put(key, "[" + ",".join(bodies) + "]")
                if self._record is not None:
                    self._record.published(blobs)  # deleting the stream frees them now
            except (EtcdUnavailable, ObjectsError) as exc:
                with self._changed:
                    self._error = exc
                    self._pending.clear()
                    self._changed.notify_all()
                return
            with self._changed:
                del self._pending[:taken]
                self._flushed += taken
                self._changed.notify_all()

    def close(self) -> None:
        """End the stream: readers stop after the last chunk."""
        self._finish({"status": "done", "count": self.count})

    def fail(self, message: str) -> None:
        """End the stream as failed: readers raise StreamFailed with ``message``."""
        self._finish({"status": "failed", "count": self.count, "error": message})

    def _finish(self, marker: dict[str, Any]) -> None:
        if self.closed:
            return
        with self._changed:
            self.closed = True
            self._changed.notify_all()
        self._flusher.join()
        if self._error is not None and marker["status"] == "done":
            marker = {"status": "failed", "count": self.count, "error": f"chunks were lost: {self._error}"}
        self._free_unpublished()
        key = self._directory.stream_key(self.name, END)
        self._store.directory_call(lambda: self._directory.etcd.put(key, json.dumps(marker)))
        self._raise_error()

    def _free_unpublished(self) -> None:
        """Delete the blobs made for chunks that were never published (a record that
        could not be written, chunks written after it) and the spares, then forget the
        record: a writer that ends leaves nothing behind for the sweeper."""
        if self._record is None:
            if self._spares is not None:
                self._spares.drop()
            return
        left = self._record.unpublished()  # the spares are in it too
        if left:
            with contextlib.suppress(ObjectsError):
                self._store.ipc.delete([object_id(blob) for blob in left])
        self._record.done()

    def __enter__(self) -> "StreamWriter":
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self.fail(f"{type(exc).__name__}: {exc}")
        else:
            self.close()


class StreamReader:
    """Iterates over a stream's chunks as they are committed.

    Raises StreamFailed when the producer failed, or when it exited without closing
    the stream (detected for producers on this host, or by ``idle_timeout``).
    """

    def __init__(self, reader: "Reader", name: str, *, timeout: float | None = None,
                 idle_timeout: float | None = None) -> None:
        self._reader, self._store, self.name = reader, reader.conn, name
        self._directory = self._store.directory
        self._prefix = self._directory.stream_key(name)
        self.idle_timeout = idle_timeout
        self._chunks: dict[int, Entry] = {}
        self._fetched: dict[str, Any] = {}  # blobs of chunks on this node, fetched ahead
        self._end: dict[str, Any] | None = None
        self._revision = 0
        self._tick = LIVENESS_EVERY if idle_timeout is None else max(0.01, min(LIVENESS_EVERY, idle_timeout))
        if timeout is not None:
            self._tick = max(0.01, min(self._tick, timeout))
        self._watch: Iterator[list[Any]] | None = None
        self._held: Pin | None = None  # the stream's pin on this node, while iterating
        self.header: dict[str, Any] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        self._refresh()
        while not self.header:
            if deadline is not None and time.monotonic() >= deadline:
                self._stop_watching()
                raise ObjectNotFound(f"stream {self.name!r} did not start to be opened within {timeout}s")
            self._wait()

    def _apply(self, key: str, value: bytes, revision: int) -> None:
        part = key[len(self._prefix):]
        self._revision = max(self._revision, revision)
        if not value:
            return
        if part == HEADER:
            self.header = json.loads(value)
        elif part == END:
            self._end = json.loads(value)
        elif part.startswith(CHUNK):
            first = int(part[len(CHUNK):])
            for offset, body in enumerate(json.loads(value)):
                self._chunks[first + offset] = Entry.from_body(body, revision)

    def _refresh(self) -> None:
        kvs, revision = self._store.directory_call(lambda: self._directory.etcd.range(self._prefix))
        for kv in kvs:
            self._apply(kv.key, kv.value, kv.mod_revision)
        self._revision = max(self._revision, revision)

    def _wait(self) -> None:
        """Block until records arrive (applying them) or a liveness tick passes."""
        if self._watch is None:
            self._watch = self._directory.etcd.watch(self._prefix, self._revision + 1, timeout=self._tick)
        try:
            batch = next(self._watch)
        except (EtcdUnavailable, StopIteration):
            self._stop_watching()  # a quiet tick, a compacted or a broken watch: read what is there
            self._refresh()
            return
        for kv in batch:
            self._apply(kv.key, kv.value, kv.mod_revision)

    def _blobs_ahead(self, index: int, entry: Entry) -> Any:
        """The blobs of chunk ``index``, fetched together with those of the chunks after it
        that are known already and held by the same node: one call to this node for a
        record's worth of chunks, or one request to the blob server of the node holding
        them; None where each chunk is read on its own."""
        store = self._store
        local = store.is_ipc and entry.instance_id == store.instance_id
        if not entry.blobs or not (local or store.is_ipc):
            return None
        if not all(b in self._fetched for b in entry.blobs):
            batch = [entry]
            for later in range(index + 1, index + PREFETCH_CHUNKS):
                known = self._chunks.get(later)
                if known is None:
                    break
                if known.instance_id == entry.instance_id and known.blobs:
                    batch.append(known)
            wanted = [b for chunk in batch for b in chunk.blobs]
            found: dict[str, Any]
            try:
                if local:
                    found = {object_name(i): blob.data for i, blob in store.ipc.get_blobs(map(object_id, wanted)).items()}
                else:
                    found = self._reader.remote.fetch_blobs(batch) or {}
            except StoreUnavailable:
                raise
            except ObjectsError:
                return None  # one of them is gone: each chunk is read (and reported) on its own
            if not all(b in found for b in entry.blobs):
                return None
            self._fetched.update(found)
        return self._fetched.pop

    def _stop_watching(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()  # type: ignore[attr-defined]

    def _writer_gone(self) -> bool:
        header = self.header
        return header.get("host") == socket.gethostname() and not is_alive(int(header["pid"]))

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._chunks_in_order()
        finally:
            self._stop_watching()
            if self._held is not None:
                self._held.release(self._store.delete_ids)
                self._held = None

    def _hold(self, entry: Entry) -> None:
        """Pin the stream's chunks on this node once for the whole read (each chunk's
        own pin is then a count in this process, not a file opened)."""
        if self._held is None and entry.hold is not None and entry.instance_id == self._store.instance_id:
            self._held = self._store.pin(entry.hold)

    def _chunks_in_order(self) -> Iterator[Any]:
        index = 0
        last_progress = time.monotonic()
        while True:
            if index in self._chunks:
                entry = self._chunks.pop(index)
                self._hold(entry)
                # an inline chunk (no blobs) never calls the node: no deadline to keep
                # the node is called through the store's ipc only, which keeps the deadline itself
                with self._store.bounded("a stream read", watchdog=False) if entry.blobs else contextlib.nullcontext():
                    chunk = self._reader.load_entry(entry, blobs=self._blobs_ahead(index, entry))
                yield chunk
                index += 1
                last_progress = time.monotonic()
                continue
            end = self._end
            if end is not None and end["count"] <= index:
                if end["status"] == "failed":
                    raise StreamFailed(f"the producer of stream {self.name!r} failed: {end['error']}")
                return
            if end is None and self._writer_gone():
                self._refresh()
                if index in self._chunks or self._end is not None:
                    continue
                raise StreamFailed(
                    f"the producer of stream {self.name!r} (pid {self.header['pid']} on "
                    f"{self.header['host']}) exited without closing it after {index} chunk(s)"
                )
            if self.idle_timeout is not None and time.monotonic() - last_progress > self.idle_timeout:
                raise StreamFailed(
                    f"no chunk of stream {self.name!r} arrived for {self.idle_timeout}s "
                    f"(after {index} chunk(s)); is its producer on {self.header['node']} alive?"
                )
            self._wait()


def delete_stream(writer: "Writer", name: str) -> int:
    """Delete stream ``name`` with the chunks it holds; return how many chunks and markers."""
    store = writer.conn
    directory = store.directory
    prefix = directory.stream_key(name)
    kvs, _ = store.directory_call(lambda: directory.etcd.range(prefix))
    if not kvs:
        raise ObjectNotFound(f"no stream named {name!r}")
    store.directory_call(lambda: directory.etcd.txn([], [delete_op(prefix, prefix=True)]))
    count = 0
    shared: dict[tuple[str, int], list[str]] = {}  # the blobs of chunks sharing their stream's hold
    for kv in kvs:
        if not kv.key[len(prefix):].startswith(CHUNK):
            count += 1
            continue
        for body in json.loads(kv.value):
            entry = Entry.from_body(body, kv.mod_revision)
            if entry.hold is not None and entry.blobs:
                shared.setdefault((entry.hold, entry.instance_id), []).extend(entry.blobs)
            else:
                writer.drop_entry(entry, copies=False)  # chunks are never copied
            count += 1
    for (hold, instance_id), blobs in shared.items():  # one free a node, once its readers let go
        writer.remote.free(hold, [(instance_id, blobs)])
    return count
