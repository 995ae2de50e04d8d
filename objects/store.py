"""``ObjectStore``: put, get, allocate, list and delete objects on one Vineyard node."""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import numpy as np

from objects import codecs
from objects.allocation import Allocation
from objects.codecs.base import TYPENAME_PREFIX, labels_of
from objects.connection import Target, open_client, release
from objects.directory import Directory, Entry, EtcdUnavailable
from objects.ipc import Unanswered, VineyardIPC
from objects.errors import (
    InvalidName,
    NodeUnavailable,
    ObjectExists,
    ObjectNotFound,
    ObjectsError,
    StoreFull,
    StoreUnavailable,
    UnsupportedType,
    VineyardClientMissing,
    translated,
)
from objects.pinning import reading
from objects.layout import (
    BlobContext,
    InlineContext,
    LayoutMeta,
    TooLarge,
    surely_too_large,
    vineyard_tree,
)
from objects.listing import Listing
from objects.names import check_name
from objects.refs import ObjectRef
from objects.remote import RemoteReads, Vanished
from objects.spares import Spares
from vineyard_runtime.node.layouts import tree_blobs, tree_layout
from objects.streams import StreamReader, StreamWriter, delete_stream
from vineyard_runtime.plumbing.deadline import Deadline
from vineyard_runtime.node.holds import NodeHolds, Pin, Writing, writing
from objects.vineyard_client import import_vineyard, loaded_vineyard, vineyard_errors
from vineyard_runtime.object_ids import object_id, object_name

_T = TypeVar("_T")
_OBJECT_ID = re.compile(r"^o[0-9a-f]{16}$")
_INLINE_ID = re.compile(r"^i[0-9a-f]{16}$")
RESERVED_PREFIX = "__fluidv"
#: How many prefixes' listings a store keeps to read again only what changed.
_LISTINGS_KEPT = 16
#: vineyard's exceptions of an object that is gone
_MISSING = ("ObjectNotExistsException", "MetaTreeSubtreeNotExistsException")
#: How often a replace retries when other writers keep changing the name meanwhile.
_REPLACE_TRIES = 50


_INLINE_IDS = itertools.count()
_INLINE_ORIGIN = secrets.randbits(32)


def _inline_id() -> str:
    """A cluster-unique id for an inline value: 32 random bits of this process, then a counter."""
    return f"i{_INLINE_ORIGIN:08x}{next(_INLINE_IDS) & 0xFFFFFFFF:08x}"


def _taken(name: str) -> ObjectExists:
    return ObjectExists(
        f"an object named {name!r} already exists; pass replace=True to replace it or delete it first"
    )


def _bounded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a store method under its node's deadline (see :mod:`vineyard_runtime.plumbing.deadline`)."""

    @functools.wraps(method)
    def call(self: "ObjectStore", *args: Any, **kwargs: Any) -> Any:
        with self.bounded(method.__name__):
            return method(self, *args, **kwargs)

    return call


def _check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    labels = dict(labels or {})
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise ObjectsError(f"labels must map non-empty strings to strings, got {key!r}: {value!r}")
    return labels


def _check_name(name: str) -> str:
    """A new object's name: the naming rule (:mod:`objects.names`), then the store's own."""
    check_name(name)
    if name != name.strip():
        raise InvalidName(f"object name {name!r} must not start or end with spaces")
    if name.startswith(RESERVED_PREFIX):
        raise InvalidName(f"names starting with {RESERVED_PREFIX!r} are reserved")
    if _OBJECT_ID.match(name) or _INLINE_ID.match(name):
        raise InvalidName(f"name {name!r} looks like an object id; choose another name")
    return name


#: How often ``get`` reads a name again that was replaced while it was being read.
REREADS = 50


class ObjectStore:
    """A connection to one Vineyard node (made by :func:`objects.connect`).

    Names live in the cluster's object directory (:mod:`objects.directory`): a named
    put is one etcd transaction, a small value is kept whole in its entry, and a large
    one is blobs of this node whose layout the entry holds, received into another node's
    memory when a reader there asks for it.
    """

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
        self.remote = RemoteReads(self)
        self._listings: dict[str, Listing] = {}
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
        return self._node_name(self.instance_id)

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
        self.remote.close()
        if self.deadline is not None:
            self.deadline.close()
        if self._ipc is not None:
            self._ipc.close()
        if self._client is not None:
            try:
                release(self.target, self._client)
            except Exception:  # noqa: BLE001 - closing a dead connection is harmless
                pass

    def __enter__(self) -> "ObjectStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ObjectStore({self.target.describe()})"

    def _node_name(self, instance_id: int) -> str:
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

    def _check_writable(self) -> None:
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

    # -- entries: how a value is written, found and dropped --------------------------

    def encode_entry(self, value: Any, labels: Mapping[str, str] | None = None, *,
                     allow_pickle: bool = False, record: Writing | None = None, hold: str | None = None,
                     spares: Spares | None = None) -> Entry:
        """Write ``value`` for the directory: inline when small, else as blobs of this
        node's shared memory whose layout the entry holds (no Vineyard metadata; their
        seals wait for ``flush_seals``). Nothing is named yet (``drop_entry`` undoes it).
        ``hold``: the key its readers pin, when not its id (see ``Entry.hold``); ``spares``:
        blobs made ahead for a writer of many values (see :mod:`objects.spares`)."""
        labels = _check_labels(labels)
        self._check_writable()
        meta = None
        if not surely_too_large(value):
            try:
                meta = codecs.encode(InlineContext(self.node, labels, allow_pickle=allow_pickle), value)
            except TooLarge:
                pass
        if meta is None:
            meta = codecs.encode(self.blob_context(labels, allow_pickle, record, spares), value)
        return self._layout_entry(meta, labels, hold)

    def blob_context(self, labels: dict[str, str], allow_pickle: bool, record: Writing | None = None,
                     spares: Spares | None = None) -> BlobContext:
        """Where a value's blobs are made on this node when its layout goes in its entry."""
        self._check_writable()
        return BlobContext(self.ipc, self.node, allow_pickle, labels, record, spares)

    def _layout_entry(self, meta: LayoutMeta, labels: dict[str, str], hold: str | None = None) -> Entry:
        return Entry(id=_inline_id(), typename=meta.typename, nbytes=meta.nbytes,
                     instance_id=self.instance_id, node=self.node, labels=labels, layout=meta.to_json(), hold=hold)

    def load_entry(self, entry: Entry, *, allow_pickle: bool = False, name: str | None = None,
                   blobs: Callable[[str], Any] | None = None) -> Any:
        """The value an entry describes (raises Vanished when its object is gone);
        ``blobs``: where to take the blobs of a layout entry, when already fetched (from
        this node's memory, pinned meanwhile, or copies in this process from another's)."""
        mine = entry.instance_id == self.instance_id
        pin = self.pin(entry.hold_key) if entry.on_node and self.is_ipc and (blobs is None or mine) else None
        try:
            with reading(pin, self.delete_ids):
                return self._load(entry, allow_pickle, name, blobs)
        except vineyard_errors(*_MISSING):
            raise Vanished(entry.id) from None
        except RuntimeError:  # vineyard's report of a blob deleted between metadata and data
            if entry.layout is None and self.is_ipc and entry.instance_id == self.instance_id:
                vineyard = import_vineyard()  # only vineyard's client raises this
                if not self.client.ipc_client.exists(vineyard.ObjectID(entry.id)):
                    raise Vanished(entry.id) from None
            raise

    def _load(self, entry: Entry, allow_pickle: bool, name: str | None, blobs: Callable[[str], Any] | None) -> Any:
        """Read ``entry`` (``load_entry`` pins it and reports what vanished)."""
        if entry.layout is not None:
            layout = (LayoutMeta.from_json(entry.layout, blobs) if blobs is not None or not entry.blobs
                      else self.remote.layout(entry, name))
            return codecs.decode(None, layout, allow_pickle=allow_pickle)
        # a Vineyard object (a client of Vineyard's own wrote it): through that client
        object_id = import_vineyard().ObjectID(entry.id)
        if not self.is_ipc:
            meta = self.client.rpc_client.get_object(object_id).meta  # copies the blobs over RPC
        elif entry.instance_id == self.instance_id:
            meta = self.client.get_meta(object_id)
        elif (name is not None and entry.typename.startswith(TYPENAME_PREFIX)  # a layout this package decodes
              and (endpoint := self.remote.blob_endpoint(entry.instance_id)) is not None):
            meta = self.remote.replica(entry, name, endpoint)
        else:
            meta = self.remote.migrate_in(entry, object_id)
        return codecs.decode(self.client, meta, allow_pickle=allow_pickle)

    def drop_entry(self, entry: Entry, *, copies: bool = True) -> None:
        """Free what ``entry`` holds and, with ``copies``, the copies other nodes received
        of it (nothing for inline values; best effort on other nodes)."""
        if not entry.on_node:
            return
        held = [(entry.instance_id, entry.blobs or [entry.id])]
        if copies:
            held += self.remote.forget_copies(entry)
        self.remote.free(entry.hold_key, held)

    def _ref_of(self, entry: Entry, name: str | None) -> ObjectRef:
        return ObjectRef(id=entry.id, name=name, typename=entry.typename, nbytes=entry.nbytes,
                         node=entry.node, instance_id=entry.instance_id, labels=dict(entry.labels))

    def _alive(self, entry: Entry) -> bool:
        """True unless the entry's value lived on a node that is gone."""
        if not entry.on_node or entry.instance_id == self.instance_id:
            return True
        return entry.instance_id in self.directory_call(self.directory.instances)

    # -- resolution ----------------------------------------------------------------

    def _find(self, target: ObjectRef | str | int | Any) -> tuple[str | None, Entry | None, Any]:
        """(name, directory entry, Vineyard object id) of ``target``: a name gives its
        entry; an id gives an object id; ObjectNotFound when the name is unknown."""
        if isinstance(target, ObjectRef):
            if target.name is not None:
                return self._find(target.name)
            return None, None, object_id(target.id)
        vineyard = loaded_vineyard()
        if vineyard is not None and isinstance(target, vineyard.ObjectID):
            return None, None, int(target)
        if isinstance(target, int) and not isinstance(target, bool):
            if not 0 <= target < 1 << 64:
                raise ObjectNotFound(f"no object {target}: object ids are 0 … 2**64-1")
            return None, None, target
        if isinstance(target, str):
            if _INLINE_ID.match(target):
                return self._named_by_id(target)
            if _OBJECT_ID.match(target):
                return None, None, object_id(target)
            entry = self.directory_call(lambda: self.directory.get(target))
            if entry is None:
                raise ObjectNotFound(f"no object named {target!r} in the cluster of {self.node}")
            return target, entry, None
        raise ObjectsError(f"cannot find an object by a {type(target).__name__}; give a name, id or ObjectRef")

    def _named_by_id(self, object_id: str) -> tuple[str, Entry, None]:
        """The name and entry of a named object given by id (one read of the directory)."""
        for name, entry in self.directory_call(lambda: self.directory.entries()):
            if entry.id == object_id:
                return name, entry, None
        raise ObjectNotFound(f"no object {object_id} in the cluster of {self.node}")

    def _meta(self, vineyard_id: int, what: Any) -> Any:
        """The Vineyard metadata of object ``vineyard_id`` (``what`` the caller named)."""
        try:
            vineyard = import_vineyard()
        except VineyardClientMissing:  # only needed if the object exists
            if self.is_ipc and not self.ipc.get_data([vineyard_id], sync_remote=True):
                raise self._not_found(what) from None
            raise
        try:
            return self.client.get_meta(vineyard.ObjectID(vineyard_id))
        except (vineyard.ObjectNotExistsException, vineyard.MetaTreeSubtreeNotExistsException):
            raise self._not_found(what) from None

    def _not_found(self, what: Any) -> ObjectNotFound:
        hint = ""
        if isinstance(what, ObjectRef) and what.name is None and what.instance_id != self.instance_id:
            hint = (f"; it is unnamed and was made on {what.node}: unnamed objects are seen "
                    "only by their node, so put it with a name to share it across nodes")
        return ObjectNotFound(f"no object {what} known to {self.node}{hint}")

    def _ref(self, meta: Any, name: str | None) -> ObjectRef:
        return ObjectRef(
            id=object_name(meta.id),
            name=name,
            typename=str(meta.typename),
            nbytes=int(meta.nbytes),
            node=self._node_name(int(meta.instance_id)),
            instance_id=int(meta.instance_id),
            labels=labels_of(meta),
        )

    # -- unnamed objects: Vineyard objects of this node ----------------------------

    def _create_object(self, meta: LayoutMeta, record: Writing | None) -> dict[str, Any]:
        """The Vineyard object of ``meta``, whose blobs this store made: unnamed, seen by
        this node's clients (vineyard's too); its metadata tree."""
        def create(tree: dict[str, Any]) -> tuple[int, int]:
            created = self.ipc.create_data(tree)
            if record is not None:  # a crash before the put returns frees it too
                record.add(object_name(created[0]))
            return created

        return vineyard_tree(meta, self.instance_id, create)

    def _own_object(self, vineyard_id: int) -> dict[str, Any] | None:
        """The metadata tree of object ``vineyard_id`` when this package wrote it on this
        node; None for any other (vineyard's client reads those)."""
        if not self.is_ipc:
            return None
        tree = self.ipc.get_data([vineyard_id]).get(vineyard_id)
        if (tree is None or not str(tree.get("typename", "")).startswith(TYPENAME_PREFIX)
                or int(tree.get("instance_id", -1)) != self.instance_id):
            return None
        return tree

    def _decode_tree(self, tree: dict[str, Any], allow_pickle: bool) -> Any:
        """The value of an object this package wrote on this node, its blobs got in one
        round trip and read in place."""
        ids = tree_blobs(tree)
        view = self.node_blobs(ids, lambda: ObjectNotFound(f"object {tree['id']} was deleted while it was being read"))
        layout = tree_layout(tree, {blob: view(blob).nbytes for blob in ids})
        return codecs.decode(None, LayoutMeta.from_json(layout, view), allow_pickle=allow_pickle)

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

    def _tree_ref(self, tree: dict[str, Any]) -> ObjectRef:
        instance_id = int(tree["instance_id"])
        return ObjectRef(id=str(tree["id"]), name=None, typename=str(tree["typename"]),
                         nbytes=int(tree.get("nbytes", 0)), node=self._node_name(instance_id),
                         instance_id=instance_id, labels=labels_of(tree))

    # -- writing -------------------------------------------------------------------

    @_bounded
    def put(
        self,
        value: Any,
        name: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        replace: bool = False,
        allow_pickle: bool = False,
    ) -> ObjectRef:
        """Store ``value`` on this node (one copy into shared memory) and return its ref.

        A named object is visible from every node as soon as this returns. Naming an
        existing object raises ObjectExists unless ``replace=True`` (the old object is
        then deleted). A full node raises StoreFull; nothing moves to another node.
        """
        with writing(self.holds) as record:  # a crash before the end frees what was written
            if name is None:
                meta = codecs.encode(self.blob_context(_check_labels(labels), allow_pickle, record), value)
                return self._tree_ref(self._create_object(meta, record))
            _check_name(name)
            entry = self.encode_entry(value, labels, allow_pickle=allow_pickle, record=record)
            return self._ref_of(self._name(name, entry, replace, record), name)

    def _name(self, name: str, entry: Entry, replace: bool, record: Writing | None = None) -> Entry:
        """Give ``entry`` the name ``name`` (one transaction); on failure free the entry.
        ``record``: the write in flight, told the name first (the sweeper keeps a named write)."""
        directory = self.directory
        if record is not None:
            record.naming(name, entry.id)
        try:
            self.flush_seals()  # a name must point at sealed blobs
            if not replace:
                stored = self.directory_call(lambda: directory.create(name, entry))
                if stored is None:
                    raise _taken(name)
                return stored
            for _ in range(_REPLACE_TRIES):
                old = self.directory_call(lambda: directory.get(name))
                stored = self.directory_call(lambda: directory.swap(name, entry, old))
                if stored is not None:
                    if old is not None and old.id != entry.id:
                        self.drop_entry(old)
                    return stored
            raise ObjectsError(f"name {name!r} kept changing under {_REPLACE_TRIES} replace attempts; try again")
        except BaseException:
            self.drop_entry(entry)
            raise

    def _check_free(self, name: str, replace: bool) -> None:
        if not replace and self.exists(name):
            raise _taken(name)

    @_bounded
    def allocate(
        self,
        shape: int | tuple[int, ...],
        dtype: Any = np.float64,
        name: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        order: str = "C",
        replace: bool = False,
    ) -> Allocation:
        """A context manager yielding a writable array in shared memory.

        On a clean exit the array is sealed and published (``allocation.ref``), with no
        copy at all; if the block raises, nothing is published and the memory is freed.
        """
        labels = _check_labels(labels)
        if name is not None:
            _check_name(name)
            self._check_free(name, replace)
        record = self.holds.writing() if self.holds else None
        ctx = self.blob_context(labels, allow_pickle=False, record=record)

        def publish(meta: Any) -> ObjectRef:
            if name is None:
                return self._tree_ref(self._create_object(meta, record))
            return self._ref_of(self._name(name, self._layout_entry(meta, labels), replace, record), name)

        try:
            dtype = np.dtype(dtype)
        except TypeError as exc:
            raise UnsupportedType(f"allocate: {exc}; give a numpy dtype such as 'float32'") from None
        return Allocation(ctx, shape, dtype, order, publish=publish, bounded=self.bounded)

    # -- reading -------------------------------------------------------------------

    @_bounded
    def get(self, target: ObjectRef | str | int | Any, *, allow_pickle: bool = False) -> Any:
        """The value of an object given by ref, name or id.

        Numeric data comes back as read-only views of shared memory. An object held by
        another node is first migrated to this node (one transfer, then zero copy). Over
        an RPC connection the data is copied to this process instead.
        """
        name, entry, object_id = self._find(target)
        if entry is None:
            with reading(self.pin(object_name(object_id)) if self.is_ipc else None, self.delete_ids):
                tree = self._own_object(object_id)
                if tree is not None:
                    return self._decode_tree(tree, allow_pickle)
                meta = self._meta(object_id, target)
                if not self.is_ipc:
                    meta = self.client.rpc_client.get_object(meta.id).meta  # copies the blobs over RPC
                elif int(meta.instance_id) != self.instance_id:
                    meta = self.migrate_here(meta)
                return codecs.decode(self.client, meta, allow_pickle=allow_pickle)
        assert name is not None  # an entry is only found by its name
        for _ in range(REREADS):
            try:
                return self.load_entry(entry, allow_pickle=allow_pickle, name=name)
            except Vanished:
                pass
            again = self.directory_call(lambda: self.directory.get(name))  # replaced or deleted meanwhile?
            if again is None or again.revision == entry.revision:
                raise ObjectNotFound(f"object {name!r} was deleted while it was being read")
            entry = again  # replaced: read the new value
        raise ObjectsError(f"object {name!r} was replaced {REREADS} times while it was being read; read it "
                           "when its writer pauses, or give each version a name of its own")

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

    @_bounded
    def info(self, target: ObjectRef | str | int | Any) -> ObjectRef:
        """Id, name, type, size, node and labels of an object."""
        name, entry, object_id = self._find(target)
        if entry is None:
            tree = self._own_object(object_id)
            return self._tree_ref(tree) if tree is not None else self._ref(self._meta(object_id, target), None)
        if not self._alive(entry):
            self.remote.owner(entry)  # raises ObjectNotFound naming the lost node
        return self._ref_of(entry, name)

    def exists(self, target: ObjectRef | str | int | Any) -> bool:
        """True when the object is known to the cluster (and its node is up)."""
        try:
            self.info(target)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str | None = None, labels: Mapping[str, str] | None = None) -> list[ObjectRef]:
        """Named objects, optionally those whose name starts with ``prefix`` and that carry
        every label in ``labels``; sorted by name. Objects of nodes that are gone are left out.

        One read of what changed since this store's last listing of ``prefix`` (see
        :mod:`objects.listing`), whatever the number of objects."""
        if prefix is not None and not isinstance(prefix, str):
            raise ObjectsError(f"prefix must be a string, got {type(prefix).__name__}")
        wanted = _check_labels(labels)
        listing = self._listings.pop(prefix or "", None) or Listing(prefix or "", self._ref_of)
        self._listings[prefix or ""] = listing  # the most recent last; a few are kept
        while len(self._listings) > _LISTINGS_KEPT:
            del self._listings[next(iter(self._listings))]
        found = self.directory_call(lambda: listing.refresh(self.directory))
        instances = functools.cache(lambda: self.directory_call(self.directory.instances))  # read once, if at all
        mine = self.instance_id
        return [ref for name, ref, on_node in found
                if not name.startswith(RESERVED_PREFIX)
                and all(ref.labels.get(k) == v for k, v in wanted.items())
                and (not on_node or ref.instance_id == mine or ref.instance_id in instances())]

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(self.list())

    # -- deleting ------------------------------------------------------------------

    def _delete_id(self, object_id: Any) -> None:
        key = object_name(object_id)
        if self.holds is None:
            self.delete_ids([key])
        else:
            self.holds.free(key, [key], self.delete_ids)

    @_bounded
    def delete(self, target: ObjectRef | str | int | Any) -> None:
        """Delete an object (and its name); ObjectNotFound when unknown."""
        name, entry, object_id = self._find(target)
        if entry is None:
            tree = self._own_object(object_id)
            entry_id = str(tree["id"]) if tree is not None else object_name(self._meta(object_id, target).id)
            for each, named in self.directory_call(lambda: self.directory.entries()):
                if named.id == entry_id:
                    self.directory_call(lambda: self.directory.remove(each, named))
            self._delete_id(object_id)
            return
        assert name is not None
        if not self.directory_call(lambda: self.directory.remove(name, entry)):
            raise ObjectNotFound(f"object {name!r} was replaced or deleted meanwhile; nothing was deleted")
        self.drop_entry(entry)

    def delete_many(self, *, labels: Mapping[str, str] | None = None, prefix: str | None = None) -> int:
        """Delete the named objects matching ``labels`` and ``prefix``; return how many.

        At least one filter is required, so a typo cannot wipe the store.
        """
        if not labels and not prefix:
            raise ObjectsError("delete_many needs labels= or prefix=; it never deletes everything")
        refs = self.list(prefix=prefix, labels=labels)
        for ref in refs:
            try:
                self.delete(ref)
            except ObjectNotFound:
                pass
        return len(refs)

    # -- streams -------------------------------------------------------------------

    def open_writer(self, name: str, *, labels: Mapping[str, str] | None = None) -> StreamWriter:
        """Start stream ``name``; ``with store.open_writer("s") as w: w.write(batch)``.

        A clean exit ends the stream; an exception marks it failed for every reader.
        """
        _check_name(name)
        return StreamWriter(self, name, _check_labels(labels))

    def open_reader(self, name: str, *, timeout: float | None = None,
                    idle_timeout: float | None = None) -> StreamReader:
        """Iterate over stream ``name`` while it is written (waits up to ``timeout`` for it
        to start); raises StreamFailed if its producer fails or vanishes."""
        _check_name(name)
        return StreamReader(self, name, timeout=timeout, idle_timeout=idle_timeout)

    def delete_stream(self, name: str) -> int:
        """Delete every chunk and marker of stream ``name``; return how many records."""
        return delete_stream(self, name)
