"""Serves a node's blobs to readers on other nodes over one TCP connection each.

Vineyard's own RPC moves a blob with a fixed cost of 40-90 ms (small writes waiting on
delayed acknowledgements). This server answers ``GET [key=<object>] <id> <id>...\\n``
with ``OK <size> <size>...\\n`` followed by the blobs' bytes, sent straight from shared
memory while object ``<object>`` is pinned (:mod:`vineyard_runtime.node.holds`), or
``ERR <reason>\\n``. It listens on loopback or the node's address only,
never on every interface, and keeps no state but its connection to the node.

A server given a token serves only connections whose first line is ``AUTH <token>``
(no answer when it matches, so it costs no round trip). The local cluster gives its
servers one, published beside each node's socket, where only the cluster's users can
read it: another local user reaching 127.0.0.1 reads no blob.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import socketserver
import threading
from typing import Any

from vineyard_runtime.plumbing.deadline import node_timeout
from vineyard_runtime.errors import NodeUnavailable, ObjectNotExists, VineyardRuntimeError
from vineyard_runtime.node.ipc import EMPTY_BLOB, VineyardIPC
from vineyard_runtime.node.layouts import shared_blobs, tree_blobs, tree_layout
from vineyard_runtime.node.holds import NodeHolds
from vineyard_runtime.node.pages import populate
from vineyard_runtime.object_ids import object_id

log = logging.getLogger("fluidv.blobs")


class _Handler(socketserver.StreamRequestHandler):
    server: "BlobServer"

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        self.ipc: VineyardIPC | None = None  # the node's blobs, through the project's protocol client
        try:
            self._serve()
        finally:
            if self.ipc is not None:
                self.ipc.close()

    def _authorized(self, line: bytes) -> bool:
        assert self.server.token is not None
        word, _, token = line.strip().partition(b" ")
        return word == b"AUTH" and hmac.compare_digest(token, self.server.token.encode())

    def _serve(self) -> None:
        if self.server.token is not None and not self._authorized(self.rfile.readline(1 << 10)):
            self.wfile.write(b"ERR not authorized: this blob server takes the token published beside its node's socket" + b"\n")
            return
        while True:
            line = self.rfile.readline(1 << 20)
            if not line:
                return
            words = line.decode(errors="replace").split()
            if not words or words[0] not in ("GET", "LAYOUT", "OBJECT") or len(words) < 2:
                self.wfile.write(b"ERR expected GET <blob id>..., LAYOUT <object id> or OBJECT <object id>\n")
                return
            keys = words.pop(1)[4:].split(",") if len(words) > 1 and words[1].startswith("key=") else []
            pins: list[Any] = []
            try:
                if self.ipc is None:
                    self.ipc = VineyardIPC(self.server.vineyard_socket, timeout=node_timeout())
                ipc = self.ipc
                if self.server.holds is not None:  # what is sent stays until it is sent
                    pins = [self.server.holds.pin(key) for key in keys]
                if words[0] in ("LAYOUT", "OBJECT"):  # OBJECT: the layout, then its blobs
                    wanted = object_id(words[1])
                    tree = ipc.get_data([wanted]).get(wanted)
                    if tree is None:
                        raise ObjectNotExists(f"object {words[1]} is not on this node")
                    found = node_blobs(ipc, tree_blobs(tree))  # one round trip for their sizes and bytes
                    layout = tree_layout(tree, {blob: view.nbytes for blob, view in found.items()})
                    views = [memoryview(json.dumps(layout).encode())]
                    if words[0] == "OBJECT":
                        views += [mapped(found[blob]) for blob in shared_blobs(layout)]
                else:
                    views = blob_views(ipc, words[1:])
            except Exception as exc:  # noqa: BLE001 - the reader is told why, the server goes on
                for pin in pins:
                    pin.release()
                if self.ipc is not None:
                    self.ipc.close()
                self.ipc = None
                kind = "NodeUnavailable" if isinstance(exc, NodeUnavailable) else type(exc).__name__
                self.wfile.write(f"ERR {kind}: {exc}".replace("\n", " ").encode() + b"\n")
                continue
            try:
                self.wfile.write(("OK " + " ".join(str(v.nbytes) for v in views) + "\n").encode())
                for view in views:
                    self.wfile.write(view)
                self.wfile.flush()
            finally:
                del views
                for pin in pins:
                    pin.release(ipc.discard)


def node_blobs(ipc: VineyardIPC, blob_ids: list[str]) -> dict[str, memoryview]:
    """The bytes of blobs ``blob_ids`` of the node, got in one round trip; ObjectNotExists
    for one the node does not hold."""
    found = ipc.get_blobs(object_id(blob) for blob in blob_ids if object_id(blob) != EMPTY_BLOB)
    views = {}
    for blob in blob_ids:
        got = found.get(object_id(blob))
        if got is None and object_id(blob) != EMPTY_BLOB:
            raise ObjectNotExists(f"blob {blob} is not on this node")
        views[blob] = got.data if got is not None else memoryview(b"")
    return views


def mapped(view: memoryview) -> memoryview:
    """``view``, its pages mapped in one call (sending would fault them in one by one)."""
    if view.nbytes:
        populate(view, write=False)
    return view


def blob_views(ipc: VineyardIPC, blob_ids: list[str]) -> list[memoryview]:
    """The bytes of blobs ``blob_ids`` of the node, in one round trip, mapped in."""
    found = node_blobs(ipc, blob_ids)
    return [mapped(found[blob]) for blob in blob_ids]


class BlobServer(socketserver.ThreadingTCPServer):
    """One node's blob server; ``serve_forever`` in a thread, ``shutdown`` to stop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, vineyard_socket: str, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None) -> None:
        self.vineyard_socket, self.token = vineyard_socket, token
        self.holds = NodeHolds.for_socket(vineyard_socket)
        super().__init__((host, port), _Handler)

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> "BlobServer":
        # a short poll: ``shutdown`` waits for the loop to notice, and a cluster stops in a second
        threading.Thread(target=self.serve_forever, args=(0.05,), name=f"blobs-{self.endpoint}",
                         daemon=True).start()
        return self


class BlobFetchError(VineyardRuntimeError, OSError):
    """A blob server refused or broke off a request; ``answered``: it said why (an
    ``ERR`` line), rather than closing the connection."""

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


class BlobFetcher:
    """A reader's connection to one blob server (not shared between threads)."""

    def __init__(self, endpoint: str, timeout: float | None = None, token: str | None = None) -> None:
        """``timeout``: seconds to wait for the server (``$FLUIDV_NODE_TIMEOUT`` unless
        given); ``token``: the one the server was given, if any."""
        timeout = node_timeout() if timeout is None else timeout
        host, _, port = endpoint.rpartition(":")
        self.endpoint = endpoint
        self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._lines = self._sock.makefile("rb")
        if token is not None:
            self._sock.sendall(f"AUTH {token}".encode() + b"\n")

    def _ask(self, request: str) -> list[int]:
        self._sock.sendall(request.encode() + b"\n")
        head = self._lines.readline().decode(errors="replace").split()
        if not head:
            raise BlobFetchError("the blob server closed the connection")
        if head[0] != "OK":
            raise BlobFetchError(" ".join(head[1:]), answered=True)
        return [int(size) for size in head[1:]]

    def _receive(self, buffer: Any) -> None:
        view = memoryview(buffer).cast("B")
        if view.nbytes and self._lines.readinto(view) != view.nbytes:  # fills it unless the peer closes
            raise BlobFetchError("the blob server closed the connection mid-transfer")

    def fetch(self, key: str, blob_ids: list[str]) -> list[bytearray]:
        """The bytes of each blob of object ``key`` (or of the objects ``key`` lists, comma
        separated), received straight into buffers of their size."""
        buffers = [bytearray(size) for size in self._ask(f"GET key={key} " + " ".join(blob_ids))]
        for buffer in buffers:
            self._receive(buffer)
        return buffers

    def fetch_into(self, key: str, blob_ids: list[str], allocate: Any) -> list[Any]:
        """Receive each blob of object ``key`` into ``allocate(size)`` (a writable buffer,
        such as a new blob of this node's): one request, no copy on this side."""
        targets = []
        for size in self._ask(f"GET key={key} " + " ".join(blob_ids)):
            targets.append(allocate(size))
            self._receive(targets[-1])
        return targets

    def layout(self, object_id: str) -> dict[str, Any]:
        """The metadata tree of object ``object_id`` (see ``layout_of``)."""
        (size,) = self._ask(f"LAYOUT {object_id}")
        raw = bytearray(size)
        self._receive(raw)
        layout: dict[str, Any] = json.loads(raw)
        return layout

    def fetch_object(self, object_id: str, allocate: Any) -> dict[str, Any]:
        """Object ``object_id`` in one request: its layout, with each of its blobs
        (``shared_blobs`` order) received into ``allocate(size)``."""
        layout_size, *sizes = self._ask(f"OBJECT key={object_id} {object_id}")
        raw = bytearray(layout_size)
        self._receive(raw)
        layout: dict[str, Any] = json.loads(raw)
        for size in sizes:
            self._receive(allocate(size))
        return layout

    def close(self) -> None:
        self._lines.close()
        self._sock.close()
