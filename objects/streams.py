"""Streams of Arrow record batches or numpy chunks between a producer and consumers.

A stream ``s`` is a set of named objects: ``__fluidv/stream/s/header`` (who writes
it), one object per chunk, and an end marker saying whether the producer finished or
failed. Chunks are ordinary objects, so a consumer on any node reads them as soon as
they are published, zero copy on the producer's node.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from objects.errors import ObjectExists, ObjectNotFound, ObjectsError, StreamFailed
from vineyard_runtime.local.processes import is_alive

if TYPE_CHECKING:
    from objects.store import ObjectStore

PREFIX = "__fluidv/stream/"
POLL_MIN, POLL_MAX = 0.0005, 0.05


def _key(name: str, part: str) -> str:
    return f"{PREFIX}{name}/{part}"


def _chunk(name: str, index: int) -> str:
    return _key(name, f"chunk/{index:010d}")


class StreamWriter:
    """Publishes chunks of one stream; ``close()`` ends it, an exception fails it."""

    def __init__(self, store: "ObjectStore", name: str, labels: dict[str, str]) -> None:
        self._store, self.name, self._labels = store, name, labels
        self.count = 0
        self.closed = False
        header = {"pid": os.getpid(), "host": socket.gethostname(), "node": store.node}
        try:
            store._put_internal(header, _key(name, "header"), labels)
        except ObjectExists:
            raise ObjectExists(
                f"a stream named {name!r} already exists; delete it with "
                "store.delete_stream() or choose another name"
            ) from None

    def write(self, chunk: Any) -> None:
        """Publish one chunk: a pyarrow RecordBatch or Table, or a numpy array."""
        if self.closed:
            raise ObjectsError(f"stream {self.name!r} is closed")
        if not isinstance(chunk, np.ndarray) and type(chunk).__module__.split(".")[0] != "pyarrow":
            raise ObjectsError(
                f"stream chunks are Arrow record batches/tables or numpy arrays, got {type(chunk).__name__}"
            )
        self._store._put_internal(chunk, _chunk(self.name, self.count), self._labels)
        self.count += 1

    def close(self) -> None:
        """End the stream: readers stop after the last chunk."""
        self._finish({"status": "done", "count": self.count})

    def fail(self, message: str) -> None:
        """End the stream as failed: readers raise StreamFailed with ``message``."""
        self._finish({"status": "failed", "count": self.count, "error": message})

    def _finish(self, marker: dict[str, Any]) -> None:
        if not self.closed:
            self._store._put_internal(marker, _key(self.name, "end"), self._labels)
            self.closed = True

    def __enter__(self) -> "StreamWriter":
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self.fail(f"{type(exc).__name__}: {exc}")
        else:
            self.close()


class StreamReader:
    """Iterates over a stream's chunks as they arrive.

    Raises StreamFailed when the producer failed, or when it exited without closing
    the stream (detected for producers on this host, or by ``idle_timeout``).
    """

    def __init__(self, store: "ObjectStore", name: str, *, timeout: float | None = None,
                 idle_timeout: float | None = None) -> None:
        self._store, self.name = store, name
        self.idle_timeout = idle_timeout
        self.header = self._wait_for(_key(name, "header"), timeout, what="to be opened")

    def _wait_for(self, key: str, timeout: float | None, what: str) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = POLL_MIN
        while True:
            try:
                return self._store.get(key)
            except ObjectNotFound:
                pass
            if deadline is not None and time.monotonic() > deadline:
                raise ObjectNotFound(f"stream {self.name!r} did not start {what} within {timeout}s")
            time.sleep(delay)
            delay = min(POLL_MAX, delay * 2)

    def _writer_gone(self) -> bool:
        header = self.header
        return header.get("host") == socket.gethostname() and not is_alive(int(header["pid"]))

    def __iter__(self) -> Iterator[Any]:
        index = 0
        delay = POLL_MIN
        last_progress = time.monotonic()
        while True:
            key = _chunk(self.name, index)
            try:
                chunk = self._store.get(key)
            except ObjectNotFound:
                chunk = None
            if chunk is not None:
                yield chunk
                index += 1
                delay, last_progress = POLL_MIN, time.monotonic()
                continue
            try:
                end = self._store.get(_key(self.name, "end"))
            except ObjectNotFound:
                end = None
            if end is not None:
                if end["count"] > index:
                    continue  # the last chunks were published before the marker
                if end["status"] == "failed":
                    raise StreamFailed(f"the producer of stream {self.name!r} failed: {end['error']}")
                return
            if self._writer_gone():
                raise StreamFailed(
                    f"the producer of stream {self.name!r} (pid {self.header['pid']} on "
                    f"{self.header['host']}) exited without closing it after {index} chunk(s)"
                )
            if self.idle_timeout is not None and time.monotonic() - last_progress > self.idle_timeout:
                raise StreamFailed(
                    f"no chunk of stream {self.name!r} arrived for {self.idle_timeout}s "
                    f"(after {index} chunk(s)); is its producer on {self.header['node']} alive?"
                )
            time.sleep(delay)
            delay = min(POLL_MAX, delay * 2)


def delete_stream(store: "ObjectStore", name: str) -> int:
    """Delete every object of stream ``name``; return how many were deleted."""
    refs = store._list_internal(_key(name, ""))
    if not refs:
        raise ObjectNotFound(f"no stream named {name!r}")
    for ref in refs:
        store._delete_internal(ref)
    return len(refs)
