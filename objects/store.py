"""``ObjectStore``: put, get, allocate, list and delete objects on one Vineyard node."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from objects import codecs
from objects.allocation import Allocation
from objects.codecs.base import Context, labels_of
from objects.connection import Target, release
from objects.errors import ObjectExists, ObjectNotFound, ObjectsError, StoreFull
from objects.refs import ObjectRef
from objects.streams import StreamReader, StreamWriter, delete_stream

_OBJECT_ID = re.compile(r"^o[0-9a-f]{16}$")
_NAME_LIMIT = 1_000_000
RESERVED_PREFIX = "__fluidv"


def _check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    labels = dict(labels or {})
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise ObjectsError(f"labels must map non-empty strings to strings, got {key!r}: {value!r}")
    return labels


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or name != name.strip():
        raise ObjectsError(f"object name {name!r} must be a non-empty string without outer spaces")
    if name.startswith(RESERVED_PREFIX):
        raise ObjectsError(f"names starting with {RESERVED_PREFIX!r} are reserved")
    if _OBJECT_ID.match(name):
        raise ObjectsError(f"name {name!r} looks like an object id; choose another name")
    return name


class ObjectStore:
    """A connection to one Vineyard node (made by :func:`objects.connect`)."""

    def __init__(self, client: Any, target: Target) -> None:
        self._client = client
        self.target = target
        self._nodes: dict[int, str] = {}
        self._closed = False

    # -- connection ----------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The underlying vineyard client, for what this API does not cover."""
        return self._client

    @property
    def instance_id(self) -> int:
        return int(self._client.instance_id)

    @property
    def node(self) -> str:
        """Name of the node this store is connected to."""
        return self._node_name(self.instance_id)

    @property
    def is_ipc(self) -> bool:
        return self.target.kind == "ipc"

    def close(self) -> None:
        """Disconnect (the connection stays while other stores of this process use it);
        arrays already returned stay valid."""
        if self._closed:
            return
        self._closed = True
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
        if instance_id not in self._nodes:
            try:
                for iid, info in self._client.meta.items():
                    self._nodes[int(iid)] = str(info.get("nodename") or f"instance-{iid}")
            except Exception:  # noqa: BLE001 - naming is cosmetic
                pass
        return self._nodes.get(instance_id, f"instance-{instance_id}")

    def _context(self, labels: dict[str, str], allow_pickle: bool) -> Context:
        if not self.is_ipc:
            raise ObjectsError(
                f"writing needs an IPC connection to a node's socket; this store uses "
                f"{self.target.describe()}. Connect with the node's socket (VINEYARD_IPC_SOCKET)"
            )
        return Context(self._client, self.node, allow_pickle=allow_pickle, labels=labels)

    # -- resolution ----------------------------------------------------------------

    def _resolve(self, target: ObjectRef | str | int | Any) -> tuple[Any, str | None]:
        """(ObjectID, name or None) of ``target``; ObjectNotFound when unknown."""
        import vineyard  # noqa: PLC0415

        if isinstance(target, ObjectRef):
            return vineyard.ObjectID(target.id), target.name
        if isinstance(target, vineyard.ObjectID):
            return target, None
        if isinstance(target, int) and not isinstance(target, bool):
            return vineyard.ObjectID(target), None
        if isinstance(target, str):
            if _OBJECT_ID.match(target):
                return vineyard.ObjectID(target), None
            try:
                return self._client.get_name(target), target
            except vineyard.ObjectNotExistsException:
                raise ObjectNotFound(f"no object named {target!r} in the cluster of {self.node}") from None
        raise ObjectsError(f"cannot find an object by a {type(target).__name__}; give a name, id or ObjectRef")

    def _meta(self, object_id: Any, what: Any) -> Any:
        import vineyard  # noqa: PLC0415

        try:
            return self._client.get_meta(object_id, sync_remote=True)
        except (vineyard.ObjectNotExistsException, vineyard.MetaTreeSubtreeNotExistsException):
            hint = ""
            if isinstance(what, ObjectRef) and what.name is None and what.instance_id != self.instance_id:
                hint = (f"; it is unnamed and was made on {what.node}: unnamed objects are seen "
                        "only by their node, so put it with a name to share it across nodes")
            raise ObjectNotFound(f"no object {what} known to {self.node}{hint}") from None

    def _ref(self, meta: Any, name: str | None) -> ObjectRef:
        return ObjectRef(
            id=f"o{int(meta.id):016x}",
            name=name,
            typename=str(meta.typename),
            nbytes=int(meta.nbytes),
            node=self._node_name(int(meta.instance_id)),
            instance_id=int(meta.instance_id),
            labels=labels_of(meta),
        )

    # -- writing -------------------------------------------------------------------

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

        A named object is persisted, so every node of the cluster sees it. Naming an
        existing object raises ObjectExists unless ``replace=True`` (the old object is
        then deleted). A full node raises StoreFull; nothing moves to another node.
        """
        if name is not None:
            _check_name(name)
        return self._put(value, name, _check_labels(labels), replace, allow_pickle)

    def _put(self, value: Any, name: str | None, labels: dict[str, str], replace: bool,
             allow_pickle: bool) -> ObjectRef:
        if name is not None:
            self._check_free(name, replace)
        meta = codecs.encode(self._context(labels, allow_pickle), value)
        return self._publish(meta, name, replace)

    def _put_internal(self, value: Any, name: str, labels: dict[str, str]) -> ObjectRef:
        """``put`` under a reserved name (streams and other bookkeeping)."""
        return self._put(value, name, labels, replace=False, allow_pickle=False)

    def _check_free(self, name: str, replace: bool) -> None:
        if not replace and self.exists(name):
            raise ObjectExists(
                f"an object named {name!r} already exists; pass replace=True to replace it "
                "or delete it first"
            )

    def _publish(self, meta: Any, name: str | None, replace: bool) -> ObjectRef:
        if name is None:
            return self._ref(meta, None)
        old = None
        if replace:
            try:
                old, _ = self._resolve(name)
            except ObjectNotFound:
                old = None
        self._client.persist(meta.id)
        self._client.put_name(meta.id, name)
        if old is not None and old != meta.id:
            self._delete_id(old)
        return self._ref(meta, name)

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
        ctx = self._context(labels, allow_pickle=False)
        return Allocation(
            ctx, shape, np.dtype(dtype), order,
            publish=lambda meta: self._publish(meta, name, replace),
        )

    # -- reading -------------------------------------------------------------------

    def get(self, target: ObjectRef | str | int | Any, *, allow_pickle: bool = False) -> Any:
        """The value of an object given by ref, name or id.

        Numeric data comes back as read-only views of shared memory. An object held by
        another node is first migrated to this node (one transfer, then zero copy). Over
        an RPC connection the data is copied to this process instead.
        """
        object_id, _ = self._resolve(target)
        meta = self._meta(object_id, target)
        if not self.is_ipc:
            meta = self._client.rpc_client.get_object(object_id).meta  # copies the blobs over RPC
        elif int(meta.instance_id) != self.instance_id:
            meta = self._migrate(meta)
        return codecs.decode(self._client, meta, allow_pickle=allow_pickle)

    def _migrate(self, meta: Any) -> Any:
        import vineyard  # noqa: PLC0415

        try:
            local_id = self._client.ipc_client.migrate(meta.id)
        except vineyard.NotEnoughMemoryException:
            raise StoreFull(
                f"node {self.node} cannot hold a copy of {meta.id} ({int(meta.nbytes)} bytes) "
                "held by another node; free memory on this node or read it on its node"
            ) from None
        return self._client.get_meta(local_id)

    def info(self, target: ObjectRef | str | int | Any) -> ObjectRef:
        """Id, name, type, size, node and labels of an object."""
        object_id, name = self._resolve(target)
        return self._ref(self._meta(object_id, target), name)

    def exists(self, target: ObjectRef | str | int | Any) -> bool:
        """True when the object is known to the cluster."""
        try:
            object_id, _ = self._resolve(target)
            self._meta(object_id, target)
        except ObjectNotFound:
            return False
        return True

    def _names(self, prefix: str | None, *, internal: bool = False) -> dict[str, Any]:
        plain = prefix and not any(c in prefix for c in "*?[")
        pattern = prefix + "*" if plain else "*"
        names = self._client.list_names(pattern, limit=_NAME_LIMIT)
        return {
            str(k): v for k, v in names.items()
            if internal == str(k).startswith(RESERVED_PREFIX) and (not prefix or str(k).startswith(prefix))
        }

    def list(self, prefix: str | None = None, labels: Mapping[str, str] | None = None) -> list[ObjectRef]:
        """Named objects, optionally those whose name starts with ``prefix`` and that carry
        every label in ``labels``; sorted by name."""
        return self._list(prefix, _check_labels(labels), internal=False)

    def _list_internal(self, prefix: str) -> list[ObjectRef]:
        return self._list(prefix, {}, internal=True)

    def _list(self, prefix: str | None, wanted: dict[str, str], internal: bool) -> list[ObjectRef]:
        refs = []
        for name, object_id in sorted(self._names(prefix, internal=internal).items()):
            try:
                ref = self._ref(self._client.get_meta(object_id, sync_remote=True), name)
            except Exception:  # noqa: BLE001 - deleted meanwhile
                continue
            if all(ref.labels.get(k) == v for k, v in wanted.items()):
                refs.append(ref)
        return refs

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(self.list())

    # -- deleting ------------------------------------------------------------------

    def _delete_id(self, object_id: Any) -> None:
        import vineyard  # noqa: PLC0415

        try:
            self._client.delete(object_id, force=False, deep=True)
        except vineyard.ObjectNotExistsException:
            pass

    def delete(self, target: ObjectRef | str | int | Any) -> None:
        """Delete an object (and its name); ObjectNotFound when unknown."""
        self._delete_internal(target)

    def _delete_internal(self, target: ObjectRef | str | int | Any) -> None:
        object_id, name = self._resolve(target)
        self._meta(object_id, target)
        names = [name] if name else [n for n, i in self._names(None).items() if i == object_id]
        for each in names:
            try:
                self._client.drop_name(each)
            except Exception:  # noqa: BLE001 - already dropped
                pass
        self._delete_id(object_id)

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
        """Delete every chunk and marker of stream ``name``; return how many objects."""
        return delete_stream(self, name)
