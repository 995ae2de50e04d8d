"""A store's connection to one Vineyard node: its socket (the project's own client,
:mod:`objects.ipc`), vineyard's client when something needs it, the cluster's object
directory, the node's deadline and holds, and the names of the cluster's nodes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from objects.connection import Target, open_client, release
from objects.directory import Directory, EtcdUnavailable
from objects.errors import NodeUnavailable, ObjectsError, StoreFull, StoreUnavailable, translated
from objects.ipc import Unanswered, VineyardIPC
from objects.layout import BlobContext
from objects.spares import Spares
from objects.vineyard_client import import_vineyard
from vineyard_runtime.node.holds import NodeHolds, Pin, Writing
from vineyard_runtime.object_ids import object_id
from vineyard_runtime.plumbing.deadline import Deadline

_T = TypeVar("_T")


class NodeConnection:
    """What every part of a store shares: the connection to its node and the cluster's
    directory (:class:`~objects.store.ObjectStore` is one)."""

    def __init__(self, target: Target, directory: Directory | None = None, *,
                 ipc: VineyardIPC | None = None, client: Any = None) -> None:
        """A store of ``target``: over a node's socket through ``ipc`` (the project's own
        connection; vineyard's client is opened only if something needs it), else over
        RPC through vineyard's ``client``."""
        self.target = target
        self._directory = directory
        self._ipc, self._client = ipc, client
        self._client_lock = threading.Lock()
        self._nodes: dict[int, str] = {}
        #: pins of this node's objects while they are read (None over RPC: reads copy)
        self.holds = NodeHolds.for_socket(target.address) if target.kind == "ipc" else None
        #: how long a call may wait for the node (None over RPC)
        self.deadline = Deadline(target.address, target.address, error=NodeUnavailable) if target.kind == "ipc" else None
        self._closed = False

    # -- connection ----------------------------------------------------------------

    @property
    def client(self) -> Any:
        """Vineyard's own client of this node, for what this API does not cover; the store
        uses it only for objects other clients of Vineyard wrote, over RPC and for
        Vineyard's migration. Opened (and vineyard imported) at its first use."""
        with self._client_lock:
            if self._client is None:
                self.ipc.instance_status()  # a stopped node fails here, at the deadline
                self._client = open_client(self.target)
            return self._client

    @property
    def directory(self) -> Directory:
        """The cluster's object directory; StoreUnavailable when this node has none."""
        if self._directory is None:
            raise StoreUnavailable(
                f"{self.target.describe()} publishes no object directory, so names and streams "
                "cannot be used: connect through the node's vineyard-config.yaml (it names "
                "EtcdEndpoint) or set $FLUIDV_ETCD_ENDPOINT to the cluster's etcd"
            )
        return self._directory

    @property
    def instance_id(self) -> int:
        return self._ipc.instance_id if self._ipc is not None else int(self.client.instance_id)

    @property
    def node(self) -> str:
        """Name of the node this store is connected to."""
        return self.node_name(self.instance_id)

    @property
    def is_ipc(self) -> bool:
        return self.target.kind == "ipc"

    @property
    def ipc(self) -> VineyardIPC:
        """This store's own connection to its node's socket (:mod:`objects.ipc`); its
        calls end at the node's deadline without a watchdog."""
        if self._ipc is None:
            raise ObjectsError(f"{self.target.describe()} is not a node's socket")
        return self._ipc

    def is_shared_memory(self, address: int) -> bool:
        """True when ``address`` (an array's ``ctypes.data``, a tensor's ``data_ptr()``)
        lies in this node's shared memory: a zero-copy read or allocation."""
        if self._ipc is not None and self._ipc.is_shared_memory(address):
            return True
        return self.is_ipc and self._client is not None and bool(self._client.ipc_client.is_shared_memory(address))

    def flush_seals(self) -> None:
        """Wait for the seals of blobs this store made (``BlobContext``): do it before
        publishing their ids."""
        if self._ipc is not None:
            self._ipc.flush()

    @contextlib.contextmanager
    def bounded(self, what: str, *, watchdog: bool = True) -> Iterator[None]:
        """The node's deadline around a block of calls to it (``what`` names them in
        the NodeUnavailable it raises; no bound for an RPC connection), and vineyard's
        errors raised as ours. Calls through ``ipc`` end at the deadline themselves;
        calls through vineyard's client are watched by a watchdog process (``watchdog``,
        once that client is open)."""
        if self._closed:
            raise StoreUnavailable(f"this store of {self.target.describe()} was closed; connect again")
        watched = watchdog and self._client is not None
        try:
            with translated(self.target.describe()), (
                    contextlib.nullcontext() if self.deadline is None else self.deadline.call(what, watchdog=watched)):
                yield
        except Unanswered:
            assert self.deadline is not None  # only a socket's store has an ipc connection
            raise self.deadline.expired(what) from None

    def close(self) -> None:
        """Disconnect (the connection stays while other stores of this process use it);
        arrays already returned stay valid."""
        if self._closed:
            return
        self._closed = True
        if self.deadline is not None:
            self.deadline.close()
        if self._ipc is not None:
            self._ipc.close()
        if self._client is not None:
            try:
                release(self.target, self._client)
            except Exception:  # noqa: BLE001 - closing a dead connection is harmless
                pass

    def node_name(self, instance_id: int) -> str:
        """The node of ``instance_id``, as its vineyardd registered it in the cluster (in
        the directory's etcd; else as vineyard's client lists the cluster)."""
        if instance_id not in self._nodes:
            try:
                if self._directory is not None:
                    for iid, instance in self._directory.instances().items():
                        self._nodes[iid] = instance.node
                else:
                    meta = self.ipc.cluster_meta() if self.is_ipc else self.client.meta
                    for iid, info in meta.items():
                        self._nodes[int(iid)] = str(info.get("nodename") or f"instance-{iid}")
            except StoreUnavailable:  # a node that does not answer, or a connection cut
                raise
            except Exception:  # noqa: BLE001 - naming is cosmetic
                pass
        return self._nodes.get(instance_id, f"instance-{instance_id}")

    def check_writable(self) -> None:
        """Writing needs an IPC connection."""
        if not self.is_ipc:
            raise ObjectsError(
                f"writing needs an IPC connection to a node's socket; this store uses "
                f"{self.target.describe()}. Connect with the node's socket (VINEYARD_IPC_SOCKET)"
            )

    def delete_ids(self, ids: list[str]) -> None:
        """Delete vineyard objects or blobs of this node by id, deep; gone ones are skipped."""
        if not self.is_ipc:
            self._delete_over_rpc(ids)
            return
        self.ipc.discard(ids)

    def _delete_over_rpc(self, ids: list[str]) -> None:
        vineyard = import_vineyard()

        for i in ids:
            try:
                self.client.delete(vineyard.ObjectID(i), force=False, deep=True)
            except vineyard.ObjectNotExistsException:
                pass

    def pin(self, key: str) -> Pin | None:
        """Pin object ``key`` of this node while it is read (None without holds)."""
        return self.holds.pin(key) if self.holds is not None else None

    def directory_call(self, what: Callable[[], _T]) -> _T:
        """Run ``what`` against the directory, reporting a lost etcd as StoreUnavailable."""
        try:
            return what()
        except EtcdUnavailable as exc:
            raise StoreUnavailable(f"the object directory of {self.node} is unreachable: {exc}") from None

    def blob_context(self, labels: dict[str, str], allow_pickle: bool, record: Writing | None = None,
                     spares: Spares | None = None) -> BlobContext:
        """Where a value's blobs are made on this node when its layout goes in its entry."""
        self.check_writable()
        return BlobContext(self.ipc, self.node, allow_pickle, labels, record, spares)

    def node_blobs(self, ids: list[str], gone: Callable[[], Exception]) -> Callable[[str], memoryview]:
        """The blobs ``ids`` of this node, got in one round trip: views of its shared
        memory given out by id, ``gone()`` raised for one that is not there."""
        found = self.ipc.get_blobs(object_id(blob) for blob in ids) if ids else {}

        def view(blob_id: str) -> memoryview:
            blob = found.get(object_id(blob_id))
            if blob is None:
                raise gone()
            return blob.data

        return view

    def migrate_here(self, meta: Any) -> Any:
        """Vineyard's copy, on this node, of the object ``meta`` another node holds."""
        vineyard = import_vineyard()

        try:
            local_id = self.client.ipc_client.migrate(meta.id)
        except vineyard.NotEnoughMemoryException:
            raise StoreFull(
                f"node {self.node} cannot hold a copy of {meta.id} ({int(meta.nbytes)} bytes) "
                "held by another node; free memory on this node or read it on its node"
            ) from None
        return self.client.get_meta(local_id)
