"""The client bridge: publishes how to reach the node's Vineyard worker.

Into a dataset's mount directory it writes ``vineyard-config.yaml`` (``Vineyard:
{IPCSocket, RPCEndpoint}``) and ``vineyard.sock``, a hard link to the worker's socket, so
a client connects with ``objects.connect()`` and ``$VINEYARD_CONFIG`` alone, wherever a
pod mounts the dataset: the config names the socket relative to itself, and the hard
link (unlike a symbolic one) needs no path outside the mount. Readers' holds are kept
beside it (``vineyard.sock.holds``). It checks the socket ten times a second: a worker
that restarts (a new socket) is relinked within a second, and a vanished worker removes
the link (clients then fall back to RPC).

On a node without a worker, ``LocalWorker`` runs a small vineyardd joined to the
cluster's etcd (``fuse.options.size``), and the bridge links that one instead.

Given the cluster's etcd, the bridge is also the node's sweeper
(:mod:`vineyard_runtime.node.sweeper`): it frees what deletes deferred for this node's
readers, and publishes itself so that deletes on other nodes leave those frees to it.
Given a blob address too, it is the node's blob server (:mod:`vineyard_runtime.node.blob_server`):
readers on other nodes receive this node's blobs from it over TCP, asking with the
cluster's token, which it publishes to this node's readers in ``vineyard-config.yaml``.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from vineyard_runtime.node import client_config
from vineyard_runtime.node.client_config import CONFIG_FILE, NodeConfig
from vineyard_runtime.plumbing.ports import socket_accepts
from vineyard_runtime.plumbing.restarts import Backoff
from vineyard_runtime.spec import DEFAULT_ETCD_PREFIX

log = logging.getLogger("fluidv.bridge")
LINK = "vineyard.sock"


@dataclass
class BridgeState:
    """What the bridge did, for its health endpoint and metrics."""

    relinks: int = 0  # links renewed after the first (a worker restarted)
    last_change: float = 0.0
    socket_identity: tuple[int, int] | None = None  # (device, inode) of the linked socket

    @property
    def linked(self) -> bool:
        return self.socket_identity is not None


def _open_as_its_folder(path: str) -> bool:
    """True once the socket is as open as its folder: in a folder every user may enter
    (a node's runtime folder), vineyardd binds its socket first and opens it to every
    user later, after joining the cluster, and a client of another user connecting
    meanwhile would be refused with EACCES. (A closed folder, such as the local
    cluster's, keeps others out whatever the socket's mode.)"""
    try:
        folder = os.stat(os.path.dirname(os.path.abspath(path))).st_mode
        return not folder & 0o001 or os.stat(path).st_mode & 0o002 != 0
    except OSError:
        return False


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the socket at ``path``. The hard link keeps the linked inode in
    use, so a restarted worker's new socket never gets its number (its change time would
    not tell: linking changes it)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    import stat  # noqa: PLC0415

    return (info.st_dev, info.st_ino) if stat.S_ISSOCK(info.st_mode) else None


class LocalWorker:
    """A vineyardd of ``size`` on this node, joined to the cluster through its etcd,
    restarted when it dies; it lives as long as the bridge."""

    def __init__(self, size: str, socket: str, etcd_endpoint: str, rpc_port: int, node_name: str | None,
                 log_path: str) -> None:
        from vineyard_runtime.spec import WorkerSpec  # noqa: PLC0415

        self.spec = WorkerSpec(size=size, socket=socket, etcd_endpoint=etcd_endpoint, rpc_port=rpc_port,
                               node_name=node_name, host_name=node_name)
        self.log_path = log_path
        self.process: Any = None
        self.restarts = 0
        self._backoff = Backoff()

    def ensure(self) -> None:
        """Start the worker, or start it again when it has died."""
        from vineyard_runtime.binaries import vineyardd_binary  # noqa: PLC0415
        from vineyard_runtime.daemons import vineyardd_command  # noqa: PLC0415
        from vineyard_runtime.plumbing.processes import spawn  # noqa: PLC0415

        if self.process is not None and self.process.poll() is None:
            return
        if self.process is not None:  # it died
            if not self._backoff.may_restart():
                return  # it keeps dying: wait out the delay
            self.restarts += 1
        command = vineyardd_command(self.spec, binary=vineyardd_binary())
        self.process = spawn(command.argv, env=command.env, log_path=self.log_path)
        self._backoff.started_now()

    def stop(self) -> None:
        from vineyard_runtime.plumbing.processes import terminate  # noqa: PLC0415

        if self.process is not None:
            terminate([self.process.pid])
            self.process.wait()


class Bridge:
    """Keeps ``publish_dir`` pointing at ``socket`` (and the RPC endpoints)."""

    def __init__(self, socket: str, publish_dir: str, rpc_endpoints: list[str] | None = None,
                 local_worker: LocalWorker | None = None, etcd_endpoint: str | None = None,
                 etcd_prefix: str = DEFAULT_ETCD_PREFIX, blob_address: tuple[str, int] | None = None,
                 blob_token: str | None = None) -> None:
        """``blob_address``: (host, port) where this node's blob server listens (None: no
        server; port 0 picks one), with ``blob_token`` asked of every reader."""
        self.socket = os.path.abspath(socket)
        #: The cluster's etcd, published so that clients find the object directory.
        self.etcd_endpoint, self.etcd_prefix = etcd_endpoint, etcd_prefix
        self.publish_dir = os.path.abspath(publish_dir)
        self.rpc_endpoints = [e for e in (rpc_endpoints or []) if e]
        #: Started when the node has no worker of its own (its socket is then linked).
        self.local_worker = local_worker
        self.state = BridgeState()
        self._stop = threading.Event()
        self._sweeper: Any = None
        self._announced: tuple[tuple[int, int], int] | None = None  # (socket identity, instance id)
        self.blob_address, self.blob_token = blob_address, blob_token
        self.blob_server: Any = None

    @property
    def link(self) -> str:
        return os.path.join(self.publish_dir, LINK)

    @property
    def config_path(self) -> str:
        return os.path.join(self.publish_dir, CONFIG_FILE)

    def publish_config(self) -> None:
        """Write the client configuration (the link as IPC socket, RPC as fallback, and
        the cluster's etcd for the object directory)."""
        os.makedirs(self.publish_dir, exist_ok=True)
        config = NodeConfig(socket=LINK, rpc_endpoints=tuple(self.rpc_endpoints),
                            etcd_endpoint=self.etcd_endpoint, etcd_prefix=self.etcd_prefix,
                            blob_token=self.blob_token if self.blob_address else None)
        client_config.write(self.config_path, config)

    def sync(self) -> bool:
        """Link the current socket (or drop the link when there is none); True on a change.
        A new socket is linked once it accepts connections: a worker that binds it then
        dies, or has not yet opened it to every user, is never published."""
        identity = _identity(self.socket)
        if identity is not None and identity != self.state.socket_identity and not (
                _open_as_its_folder(self.socket) and socket_accepts(self.socket)):
            identity = None
        linked = identity is not None and _identity(self.link) == identity
        if identity is not None and identity == self.state.socket_identity and linked:
            return False
        if identity is None and self.state.socket_identity is None and not os.path.lexists(self.link):
            return False
        if identity is None:
            if os.path.lexists(self.link):
                os.unlink(self.link)
        else:
            temporary = f"{self.link}.{os.getpid()}.tmp"
            if os.path.lexists(temporary):
                os.unlink(temporary)
            try:
                os.link(self.socket, temporary)
            except OSError as exc:  # another file system: a symbolic link, for pods that see its target
                if exc.errno != errno.EXDEV:
                    raise
                os.symlink(self.socket, temporary)
            os.replace(temporary, self.link)
            if self.state.last_change:
                self.state.relinks += 1
        self.state.socket_identity = identity
        self.state.last_change = time.time()
        return True

    def run(self, interval: float = 0.1) -> None:
        """Publish, then keep the link current until ``stop()``."""
        self.publish_config()
        if self.local_worker is not None and _identity(self.socket) is None:
            self.socket = os.path.abspath(self.local_worker.spec.socket)
        else:
            self.local_worker = None  # the node has a worker: nothing to run
        if self.etcd_endpoint:
            self._start_sweeper()
        try:
            while not self._stop.is_set():
                try:
                    if self.local_worker is not None:
                        self.local_worker.ensure()
                    self.sync()
                except OSError as exc:  # a full or read-only disk: report, keep trying
                    log.warning("cannot publish into %s: %s", self.publish_dir, exc)
                self._stop.wait(interval)
        finally:
            self._stop_sweeper()
            if self.local_worker is not None:
                self.local_worker.stop()

    def _start_sweeper(self) -> None:
        from vineyard_runtime.node.probe import Pinger  # noqa: PLC0415
        from vineyard_runtime.node.sweeper import NodeSweeper  # noqa: PLC0415

        assert self.etcd_endpoint is not None
        pinger = Pinger(self.socket)

        def instance_id() -> int | None:
            identity = self.state.socket_identity
            if identity is None:
                return None
            if self._announced is None or self._announced[0] != identity:  # first link, or a restarted worker
                if not pinger.ping() or pinger.instance_id is None:
                    return None
                sweeper.announce(pinger.instance_id)  # etcd down: raises, and the next round tries again
                self._serve_blobs(sweeper.etcd, pinger.instance_id)
                self._announced = (identity, pinger.instance_id)
            return self._announced[1]

        # through the link: the holds it keeps are those beside it, where the readers pin
        sweeper = NodeSweeper(self.link, self.etcd_endpoint, self.etcd_prefix, instance_id)
        self._sweeper = sweeper.start()

    def _serve_blobs(self, etcd: Any, instance_id: int) -> None:
        """Start the blob server (once: it follows the link through worker restarts) and
        say in etcd that it serves instance ``instance_id``."""
        if self.blob_address is None:
            return
        from vineyard_runtime.node.blob_server import BlobServer  # noqa: PLC0415
        from vineyard_runtime.etcd_keys import endpoint_key  # noqa: PLC0415

        if self.blob_server is None:
            host, port = self.blob_address
            self.blob_server = BlobServer(self.link, host=host, port=port, token=self.blob_token).start()
            log.info("serving this node's blobs on %s", self.blob_server.endpoint)
        etcd.put(endpoint_key(self.etcd_prefix, instance_id), self.blob_server.endpoint)

    def _stop_sweeper(self) -> None:
        if self._sweeper is None:
            return
        if self._announced is not None:  # deletes elsewhere free over RPC again, reads migrate
            self._sweeper.withdraw(self._announced[1])
            if self.blob_server is not None:
                from vineyard_runtime.etcd_keys import endpoint_key  # noqa: PLC0415
                from vineyard_runtime.etcd_client import delete_op  # noqa: PLC0415

                self._sweeper.etcd.txn([], [delete_op(endpoint_key(self.etcd_prefix, self._announced[1]))])
        if self.blob_server is not None:
            self.blob_server.shutdown()
            self.blob_server.server_close()
        self._sweeper.stop()
        self._sweeper = None

    def stop(self) -> None:
        self._stop.set()
