"""vineyardd's IPC protocol, spoken by the project itself.

One connection to a node's socket: 8-byte little-endian length-prefixed JSON requests,
answered in order; an error answer carries ``code`` and ``message``. The node's shared
memory is one memfd, sent once per connection as an ``SCM_RIGHTS`` message of one byte
right after the reply that first refers to it, and mapped here once; a blob is a slice of
that map. Requests sent back to back are answered back to back, so ``create_blobs`` and
``seal`` of many blobs cost one round trip, and a seal asked with ``wait=False`` waits
to go with the next request (or ``flush``): a writer of many blobs pays one round trip
per blob, not two.

Waits never hold the GIL (plain socket calls) and end at the connection's ``timeout``,
which closes the connection: a stopped node fails the call (``unanswered``), it does not
hang it. Calls from several threads take turns on the connection. Its errors are the
runtime's (:mod:`vineyard_runtime.errors`); a package above gives its own by subclassing
(``objects.ipc``).
"""

from __future__ import annotations

import array
import ctypes
import json
import mmap
import os
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vineyard_runtime.errors import IPCRefused, IPCUnanswered, IPCUnavailable, ObjectNotExists, OutOfMemory
from vineyard_runtime.object_ids import object_id, object_name

_LENGTH = struct.Struct("<Q")
#: vineyardd's status codes that have an error of their own here
OBJECT_NOT_EXISTS, NOT_ENOUGH_MEMORY = 12, 41
#: the vineyardd releases whose protocol this client speaks (checked at connect)
SPOKEN = "0.24."
#: the fields of a Vineyard metadata tree that vineyardd keeps for itself, and a blob's type
VINEYARD_FIELDS = frozenset({"id", "instance_id", "global", "transient", "signature", "__timestamp"})
BLOB_TYPENAME = "vineyard::Blob"
#: a zero-size blob's fixed id (it has no memory)
EMPTY_BLOB = 0x8000000000000000


@dataclass(frozen=True)
class Blob:
    """A blob of the node's shared memory: its id and its bytes (writable until sealed
    for its creator, read-only for readers)."""

    id: int
    data: memoryview

    @property
    def name(self) -> str:
        """The id as the project spells object ids (``o`` and 16 hex digits)."""
        return object_name(self.id)


class VineyardIPC:
    """A connection to the vineyardd serving ``socket_path``."""

    #: what it raises: a missing object, a full node, a connection gone or refused, a
    #: node silent past the timeout, a request refused
    not_found: type[Exception] = ObjectNotExists
    out_of_memory: type[Exception] = OutOfMemory
    unavailable: type[Exception] = IPCUnavailable
    unanswered: type[Exception] = IPCUnanswered
    refused: type[Exception] = IPCRefused

    def __init__(self, socket_path: str, timeout: float | None = None) -> None:
        self.socket_path, self.timeout = socket_path, timeout
        self._lock = threading.Lock()
        self._maps: dict[int, mmap.mmap] = {}
        self._spans: dict[int, tuple[int, int]] = {}  # each map's address and size
        self._deferred: list[dict[str, Any]] = []  # seals sent with the next request
        self._quiet: list[dict[str, Any]] = []  # deletes sent with the next request, their answers ignored
        self._holder: int | None = None  # the thread waiting on the connection
        self._sock: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(socket_path)
        except OSError as exc:
            self._sock.close()
            self._sock = None
            raise self.unavailable(f"no vineyardd answers on {socket_path}: {exc.strerror or exc}") from None
        reply = self._call({"type": "register_request", "version": f"{SPOKEN}2", "store_type": 1})
        if not reply.get("store_match", True):
            self.close()
            raise self.unavailable(f"vineyardd on {socket_path} refused this client's store type")
        self.instance_id: int = int(reply["instance_id"])
        self.rpc_endpoint: str = str(reply.get("rpc_endpoint", ""))
        self.version: str = str(reply.get("version", ""))
        if not self.version.startswith(SPOKEN):
            self.close()
            raise self.unavailable(
                f"vineyardd on {socket_path} is version {self.version or '(not said)'}, and this client "
                f"speaks the protocol of vineyardd {SPOKEN}x (the vineyardd of the vineyard-bdist wheel "
                "this project installs): run that vineyardd (`fluidv cluster up` does), or a release of "
                "this project made for your vineyardd"
            )

    # -- blobs ---------------------------------------------------------------------

    def create_blobs(self, sizes: Iterable[int]) -> list[Blob]:
        """New writable blobs of ``sizes`` bytes, in one round trip."""
        replies = self._calls([{"type": "create_buffer_request", "size": int(size)} for size in sizes])
        return [self._blob(reply["created"], writable=True) for reply in replies]

    def create_blob(self, size: int) -> Blob:
        (blob,) = self.create_blobs([size])
        return blob

    def seal(self, ids: Iterable[int], *, wait: bool = True) -> None:
        """Seal blobs (their bytes final, readable by others), in one round trip; with
        ``wait=False`` the seals go with this connection's next request or ``flush``
        (their errors are raised there), so publish their ids only after a ``flush``."""
        requests = [{"type": "seal_request", "object_id": int(i)} for i in ids]
        if wait:
            self._calls(requests)
            return
        with self._lock:
            self._deferred.extend(requests)

    def flush(self) -> None:
        """Send the seals asked with ``wait=False`` and wait for their answers."""
        self._calls([])

    def get_blobs(self, ids: Iterable[int]) -> dict[int, Blob]:
        """The sealed blobs of ``ids`` that exist, read-only, in one round trip (a missing
        id is simply absent)."""
        wanted = [int(i) for i in ids]
        (reply,) = self._calls([{"type": "get_buffers_request", "ids": wanted, "unsafe": False}])
        return {int(p["object_id"]): self._blob(p, writable=False) for p in reply.get("payloads") or []}

    def release(self, ids: Iterable[int]) -> None:
        """Say that this client no longer uses blobs it got (vineyardd's own count)."""
        self._calls([{"type": "release_request", "object_id": int(i)} for i in ids])

    def delete(self, ids: Iterable[int], *, force: bool = False, deep: bool = True) -> None:
        """Delete objects or blobs (vineyardd frees their memory at once). Asked by the
        thread that waits on this connection (a zero-copy view's last reference dropped
        meanwhile frees what a delete left), it goes with the next request instead."""
        request = {"type": "del_data_request", "id": [int(i) for i in ids], "force": force, "deep": deep,
                   "fastpath": False, "memory_trim": False}
        if self._holder == threading.get_ident():
            self._quiet.append(request)
            return
        self._calls([request])

    def discard(self, names: list[str]) -> None:
        """Delete the objects or blobs ``names`` (``o`` and 16 hex digits), deep, skipping
        those already gone: one request, one per id only when one was gone."""
        try:
            self.delete(object_id(name) for name in names)
        except self.not_found:
            for name in names:
                try:
                    self.delete([object_id(name)])
                except self.not_found:
                    pass

    def create_data(self, tree: dict[str, Any]) -> tuple[int, int]:
        """Create an object of Vineyard metadata ``tree`` (its members' trees carry their
        ids: vineyardd takes no member it has not seen); its id and signature."""
        (reply,) = self._calls([{"type": "create_data_request", "content": tree}])
        return int(reply["id"]), int(reply["signature"])

    def get_data(self, ids: Iterable[int], *, sync_remote: bool = False) -> dict[int, dict[str, Any]]:
        """The metadata trees (members included) of the objects ``ids`` this node knows
        (with ``sync_remote``, the cluster's published objects too), in one round trip (a
        missing one is absent)."""
        (reply,) = self._calls([{"type": "get_data_request", "id": [int(i) for i in ids],
                                 "sync_remote": sync_remote, "wait": False}])
        return {object_id(key): tree for key, tree in (reply.get("content") or {}).items()}

    def list_data(self, pattern: str = "*", *, limit: int = 1_000_000) -> dict[int, dict[str, Any]]:
        """The metadata trees of at most ``limit`` objects of the cluster whose type name
        matches the glob ``pattern``, by id, in one round trip."""
        (reply,) = self._calls([{"type": "list_data_request", "pattern": pattern, "regex": False,
                                 "limit": int(limit)}])
        return {object_id(key): tree for key, tree in (reply.get("content") or {}).items()}

    def persist(self, id_: int) -> None:
        """Publish the object ``id_`` to the cluster (vineyardd writes it to etcd)."""
        self._calls([{"type": "persist_request", "id": int(id_)}])

    def cluster_meta(self) -> dict[int, dict[str, Any]]:
        """Every vineyardd this node sees in its cluster (``nodename``, ``rpc_endpoint``,
        ...), by instance id."""
        (reply,) = self._calls([{"type": "cluster_meta"}])
        return {int(key.lstrip("i")): dict(value) for key, value in (reply.get("meta") or {}).items()}

    def instance_status(self) -> dict[str, Any]:
        """The node's counters: memory_usage, memory_limit, ipc_connections, ..."""
        (reply,) = self._calls([{"type": "instance_status_request"}])
        return dict(reply["meta"])

    def is_shared_memory(self, address: int) -> bool:
        """True when ``address`` lies in the node's shared memory as this connection maps it."""
        return any(start <= address < start + size for start, size in self._spans.values())

    def close(self) -> None:
        """Close the connection (deletes and seals still waiting are sent first); views
        given out stay valid."""
        if self._quiet or self._deferred:
            try:
                self._calls([])
            except (self.unavailable, self.refused, self.not_found):
                pass
        with self._lock:
            self._close()

    def __enter__(self) -> "VineyardIPC":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the wire ------------------------------------------------------------------

    def _blob(self, payload: dict[str, Any], *, writable: bool) -> Blob:
        size, store = int(payload["data_size"]), int(payload["store_fd"])
        if size == 0 or store < 0:
            return Blob(int(payload["object_id"]), memoryview(bytearray()) if writable else memoryview(b""))
        offset = int(payload["data_offset"])
        view = memoryview(self._maps[store])[offset:offset + size]
        return Blob(int(payload["object_id"]), view if writable else view.toreadonly())

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        (reply,) = self._calls([request])
        return reply

    def _calls(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``requests`` back to back, then read their replies in order (and the store
        fds that follow them)."""
        with self._lock:
            if not requests and not self._deferred and not self._quiet:
                return []
            if self._sock is None:
                raise self.unavailable(f"the connection to vineyardd on {self.socket_path} is closed")
            quiet, self._quiet = self._quiet, []
            sent, self._deferred = self._deferred + requests, []
            self._holder = threading.get_ident()
            try:
                self._sock.sendall(b"".join(_frame(r) for r in quiet + sent))
                replies = [self._reply() for _ in quiet + sent][len(quiet):]
            except (TimeoutError, socket.timeout):
                self._close()
                raise self.unanswered(f"vineyardd on {self.socket_path} did not answer within {self.timeout:g} s; "
                                 "is the node stopped?") from None
            except (OSError, ValueError) as exc:
                self._close()
                raise self.unavailable(f"the connection to vineyardd on {self.socket_path} broke: {exc}") from None
            finally:
                self._holder = None
        for request, reply in zip(sent, replies):
            self._raise_for(reply, request)
        return replies[len(sent) - len(requests):]

    def _reply(self) -> dict[str, Any]:
        (length,) = _LENGTH.unpack(self._receive(_LENGTH.size))
        reply: dict[str, Any] = json.loads(self._receive(length))
        sent: list[int] = []  # the stores whose fds follow, in order
        if reply.get("type") == "create_buffer_reply" and int(reply.get("fd", -1)) >= 0:
            sent = [int(reply["fd"])]
        elif reply.get("type") == "get_buffers_reply":
            sent = [int(fd) for fd in reply.get("fds") or []]
        payloads = [reply["created"]] if "created" in reply else list(reply.get("payloads") or [])
        sizes = {int(p["store_fd"]): int(p["map_size"]) for p in payloads}
        for store in sent:
            self._map(store, sizes[store])
        return reply

    def _map(self, store: int, size: int) -> None:
        """Receive the fd of ``store`` (one byte, one SCM_RIGHTS fd) and map it whole."""
        assert self._sock is not None
        fds = array.array("i")
        _, ancillary, _, _ = self._sock.recvmsg(1, socket.CMSG_LEN(fds.itemsize))
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
        if not fds:
            raise ValueError(f"vineyardd named store {store} but sent no file descriptor for it")
        try:
            self._maps[store] = mapped = mmap.mmap(fds[0], size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            self._spans[store] = (ctypes.addressof(ctypes.c_char.from_buffer(mapped)), size)
        finally:
            for fd in fds:
                os.close(fd)

    def _receive(self, count: int) -> bytes:
        assert self._sock is not None
        chunks, got = [], 0
        while got < count:
            chunk = self._sock.recv(count - got)
            if not chunk:
                raise ValueError("vineyardd closed the connection")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _raise_for(self, reply: dict[str, Any], request: dict[str, Any]) -> None:
        code = int(reply.get("code", 0) or 0)
        if code == 0:
            return
        message = str(reply.get("message", ""))
        what = str(request.get("type", "")).removesuffix("_request")
        if code == OBJECT_NOT_EXISTS:
            raise self.not_found(f"vineyardd has no such object ({what}: {message})")
        if code == NOT_ENOUGH_MEMORY:
            raise self.out_of_memory(f"vineyardd is out of memory: {message}")
        raise self.refused(f"vineyardd refused {what} (code {code}): {message}")

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        # the maps stay: views given out keep them alive, and they go with the last view


def _frame(request: dict[str, Any]) -> bytes:
    body = json.dumps(request, separators=(",", ":")).encode()
    return _LENGTH.pack(len(body)) + body


__all__ = ["BLOB_TYPENAME", "EMPTY_BLOB", "SPOKEN", "VINEYARD_FIELDS", "Blob", "VineyardIPC"]
