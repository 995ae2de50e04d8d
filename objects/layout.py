"""Object layouts: a value's metadata as plain dicts, and where its blobs are.

The codecs write through a :class:`~objects.codecs.base.Context`. :class:`InlineContext`
keeps blobs as bytes and metadata as plain dicts, so a small value needs no Vineyard
round trip at all; ``to_json``/``from_json`` carry it in a directory entry. When a value
outgrows the budget, encoding stops with :class:`TooLarge` and the caller writes it with
a :class:`BlobContext`: the metadata stays dicts, the blobs are the node's shared memory,
made through the project's own IPC connection (:mod:`objects.ipc`) and referred to by id
(one round trip per blob). The layout then goes into the entry (a named value), or
becomes a Vineyard object of the node (``vineyard_tree``; an unnamed value).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np

from objects.codecs.base import Context, meta_fields, node_full
from objects.errors import ObjectsError, StoreFull
from objects.ipc import VineyardIPC
from objects.spares import Spares
from vineyard_runtime.node.holds import Writing
from vineyard_runtime.node.ipc import BLOB_TYPENAME, EMPTY_BLOB
from vineyard_runtime.object_ids import object_name

#: Values whose blobs add up to at most this many bytes are kept inline.
INLINE_MAX = 16 << 10


def surely_too_large(value: Any) -> bool:
    """True when ``value`` reports more data bytes than can be inline (``nbytes`` of
    numpy, Arrow, torch and pandas Series; a DataFrame's ``memory_usage``), so writing
    it is not first tried inline."""
    nbytes = getattr(value, "nbytes", None)
    if nbytes is None and callable(getattr(value, "memory_usage", None)) and hasattr(value, "columns"):
        nbytes = int(value.memory_usage(index=False, deep=False).sum())
    return isinstance(nbytes, int) and nbytes > INLINE_MAX


class TooLarge(ObjectsError):
    """The value does not fit the inline budget."""


class InlineBlob(bytes):
    """A blob kept as bytes; reads are views of these bytes."""

    @property
    def is_empty(self) -> bool:
        return len(self) == 0

    @property
    def size(self) -> int:
        return len(self)


class SharedBlob:
    """A sealed Vineyard blob referred to by a layout (``blob`` once read or written)."""

    def __init__(self, blob_id: str, size: int, blob: Any = None) -> None:
        self.id, self.size, self.blob = blob_id, size, blob

    @property
    def is_empty(self) -> bool:
        return self.size == 0

    def shared_view(self) -> memoryview:
        """A read-only view of the blob's memory (what ``blob_view`` returns)."""
        return memoryview(self.blob).toreadonly() if self.size else memoryview(b"")


class LayoutMeta:
    """A dict-based stand-in for vineyard's ObjectMeta (typename, fields, members)."""

    def __init__(self, fields: dict[str, Any] | None = None,
                 members: dict[str, "LayoutMeta | InlineBlob"] | None = None) -> None:
        self.fields = dict(fields or {})
        self.members = dict(members or {})

    id = "inline"

    @property
    def typename(self) -> str:
        return str(self.fields["typename"])

    @property
    def nbytes(self) -> int:
        return int(self.fields.get("nbytes", 0))

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.fields[key] = value

    def add_member(self, name: str, member: "LayoutMeta | InlineBlob") -> None:
        self.members[name] = member

    def member(self, name: str) -> "LayoutMeta | InlineBlob":
        return self.members[name]

    get_member = member

    def to_json(self) -> dict[str, Any]:
        members: dict[str, Any] = {}
        for name, m in self.members.items():
            if isinstance(m, InlineBlob):
                members[name] = {"blob": base64.b64encode(m).decode()}
            elif isinstance(m, SharedBlob):
                members[name] = {"shared": m.id, "size": m.size}
            else:
                members[name] = m.to_json()
        return {"fields": self.fields, "members": members}

    @classmethod
    def from_json(cls, data: dict[str, Any], resolve: Callable[[str], Any] | None = None) -> "LayoutMeta":
        """The layout ``to_json`` made; ``resolve(id)`` gives the blob of a shared member."""
        members: dict[str, Any] = {}
        for name, m in data.get("members", {}).items():
            if "blob" in m:
                members[name] = InlineBlob(base64.b64decode(m["blob"]))
            elif "shared" in m:
                if resolve is None:
                    raise ValueError("this layout refers to shared-memory blobs: give resolve=")
                members[name] = SharedBlob(m["shared"], int(m["size"]), resolve(m["shared"]) if m["size"] else None)
            else:
                members[name] = cls.from_json(m, resolve)
        return cls(data.get("fields"), members)


def with_blob_ids(layout: dict[str, Any], renamed: dict[str, str]) -> dict[str, Any]:
    """``layout`` with its shared blobs' ids replaced as ``renamed`` says."""
    members = {}
    for name, m in layout.get("members", {}).items():
        if "shared" in m:
            members[name] = dict(m, shared=renamed.get(m["shared"], m["shared"]))
        elif "members" in m:
            members[name] = with_blob_ids(m, renamed)
        else:
            members[name] = m
    return {"fields": layout.get("fields", {}), "members": members}


def vineyard_tree(meta: LayoutMeta, instance_id: int, create: Callable[[dict[str, Any]], tuple[int, int]]) -> dict[str, Any]:
    """``meta`` (its blobs shared, or empty) as an object of Vineyard metadata, made with
    ``create(tree) -> (id, signature)`` members first (vineyardd wants their ids first);
    the tree, with its id and signature."""
    tree: dict[str, Any] = {"nbytes": 0, **meta.fields, "instance_id": instance_id, "transient": True}
    for name, member in meta.members.items():
        if isinstance(member, LayoutMeta):
            tree[name] = vineyard_tree(member, instance_id, create)
            continue
        if isinstance(member, InlineBlob) and member:
            raise ObjectsError("a Vineyard object's blobs are the node's: this layout holds bytes of its own")
        blob_id, size = (member.id, member.size) if isinstance(member, SharedBlob) else (object_name(EMPTY_BLOB), 0)
        tree[name] = {"id": blob_id, "typename": BLOB_TYPENAME, "length": size, "nbytes": size,
                      "instance_id": instance_id, "transient": True}
    created, signature = create(tree)
    return dict(tree, id=object_name(created), signature=signature)


class _Builder(bytearray):
    """A writable inline blob; ``copy`` mirrors vineyard's builder."""

    def copy(self, offset: int, address: int, size: int) -> None:  # type: ignore[override]
        import ctypes  # noqa: PLC0415

        view = memoryview(self)
        view[offset:offset + size] = ctypes.string_at(address, size)


class _NewBlob(np.ndarray):
    """A new blob's bytes (a writable uint8 array over them) and its ``id``."""

    id: int


class _LayoutContext(Context):
    """A Context whose metadata stays a LayoutMeta (no Vineyard metadata calls)."""

    def empty_blob(self) -> Any:
        return InlineBlob(b"")

    def new_meta(self, kind: str, header: dict[str, Any], nbytes: int) -> Any:
        return LayoutMeta(meta_fields(kind, header, nbytes, self.labels))

    def create(self, meta: Any) -> Any:
        return meta


class BlobContext(_LayoutContext):
    """A LayoutMeta context whose blobs are the node's, made through the project's own
    IPC connection (seals ride with the next request: ``flush`` it before publishing the
    layout)."""

    def __init__(self, blobs: VineyardIPC, node: str, allow_pickle: bool, labels: dict[str, str],
                 record: Writing | None = None, spares: Spares | None = None) -> None:
        super().__init__(node=node, allow_pickle=allow_pickle, labels=labels, record=record)
        self.blobs, self.spares = blobs, spares

    def _create(self, nbytes: int) -> Any:
        """A new writable blob of the node, through the project's own IPC connection (or
        made ahead by ``spares``, which records it)."""
        try:
            blob = self.spares.take(nbytes) if self.spares is not None else self.blobs.create_blob(nbytes)
        except StoreFull:
            status = self.blobs.instance_status()
            raise node_full(self.node, nbytes, int(status["memory_limit"]), int(status["memory_usage"])) from None
        builder = np.frombuffer(blob.data, np.uint8).view(_NewBlob)
        builder.id = blob.id
        return builder

    def seal(self, builder: Any) -> Any:
        self.blobs.seal([builder.id], wait=False)
        return SharedBlob(object_name(builder.id), builder.nbytes, builder.data.toreadonly())

    def abort(self, builder: Any) -> None:
        try:
            self.blobs.delete([builder.id])
        except ObjectsError:  # releasing is best effort after a failure
            pass


class InlineContext(_LayoutContext):
    """A Context whose blobs and metadata stay in this process (see the module doc)."""

    def __init__(self, node: str, labels: dict[str, str], *, allow_pickle: bool = False,
                 budget: int = INLINE_MAX) -> None:
        super().__init__(node=node, allow_pickle=allow_pickle, labels=labels)
        self.left = budget

    def new_blob(self, nbytes: int) -> Any:
        if nbytes > self.left:
            raise TooLarge(nbytes)
        self.left -= nbytes
        return _Builder(nbytes)

    def seal(self, builder: Any) -> Any:
        return InlineBlob(builder)

    def abort(self, builder: Any) -> None:
        return None
