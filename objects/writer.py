"""Writing: a value encoded into its entry (inline, or blobs of this node), named in one
directory transaction, or kept unnamed as a Vineyard object of this node; and deleting,
which frees what an entry holds on every node that has a copy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from objects import codecs
from objects.allocation import Allocation
from objects.directory import Entry
from objects.errors import ObjectExists, ObjectNotFound, ObjectsError, UnsupportedType
from objects.layout import InlineContext, LayoutMeta, TooLarge, surely_too_large, vineyard_tree
from objects.names import check_new_name
from objects.node import NodeConnection
from objects.reader import Reader
from objects.refs import ObjectRef
from objects.remote import RemoteReads
from objects.spares import Spares
from vineyard_runtime.node.holds import Writing, writing
from vineyard_runtime.object_ids import new_inline_id, object_name

#: How often a replace retries when other writers keep changing the name meanwhile.
_REPLACE_TRIES = 50


def check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """``labels`` as a dict, once every key and value is a string (keys not empty)."""
    labels = dict(labels or {})
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise ObjectsError(f"labels must map non-empty strings to strings, got {key!r}: {value!r}")
    return labels


def _taken(name: str) -> ObjectExists:
    return ObjectExists(
        f"an object named {name!r} already exists; pass replace=True to replace it or delete it first"
    )


class Writer:
    """The write side of one store."""

    def __init__(self, conn: NodeConnection, reader: Reader, remote: RemoteReads) -> None:
        self.conn, self.reader, self.remote = conn, reader, remote

    # -- entries -------------------------------------------------------------------

    def encode_entry(self, value: Any, labels: Mapping[str, str] | None = None, *,
                     allow_pickle: bool = False, record: Writing | None = None, hold: str | None = None,
                     spares: Spares | None = None) -> Entry:
        """Write ``value`` for the directory: inline when small, else as blobs of this
        node's shared memory whose layout the entry holds (no Vineyard metadata; their
        seals wait for ``flush_seals``). Nothing is named yet (``drop_entry`` undoes it).
        ``hold``: the key its readers pin, when not its id (see ``Entry.hold``); ``spares``:
        blobs made ahead for a writer of many values (see :mod:`objects.spares`)."""
        labels = check_labels(labels)
        self.conn.check_writable()
        meta = None
        if not surely_too_large(value):
            try:
                meta = codecs.encode(InlineContext(self.conn.node, labels, allow_pickle=allow_pickle), value)
            except TooLarge:
                pass
        if meta is None:
            meta = codecs.encode(self.conn.blob_context(labels, allow_pickle, record, spares), value)
        return self._layout_entry(meta, labels, hold)

    def _layout_entry(self, meta: LayoutMeta, labels: dict[str, str], hold: str | None = None) -> Entry:
        return Entry(id=new_inline_id(), typename=meta.typename, nbytes=meta.nbytes,
                     instance_id=self.conn.instance_id, node=self.conn.node, labels=labels, layout=meta.to_json(),
                     hold=hold)

    def drop_entry(self, entry: Entry, *, copies: bool = True) -> None:
        """Free what ``entry`` holds and, with ``copies``, the copies other nodes received
        of it (nothing for inline values; best effort on other nodes)."""
        if not entry.on_node:
            return
        held = [(entry.instance_id, entry.blobs or [entry.id])]
        if copies:
            held += self.remote.forget_copies(entry)
        self.remote.free(entry.hold_key, held)

    # -- values --------------------------------------------------------------------

    def put(self, value: Any, name: str | None, labels: Mapping[str, str] | None, replace: bool,
            allow_pickle: bool) -> ObjectRef:
        """Store ``value`` (see :meth:`objects.store.ObjectStore.put`)."""
        with writing(self.conn.holds) as record:  # a crash before the end frees what was written
            if name is None:
                meta = codecs.encode(self.conn.blob_context(check_labels(labels), allow_pickle, record), value)
                return self.reader.tree_ref(self._create_object(meta, record))
            check_new_name(name)
            entry = self.encode_entry(value, labels, allow_pickle=allow_pickle, record=record)
            return self.reader.ref_of(self._name(name, entry, replace, record), name)

    def allocate(self, shape: int | tuple[int, ...], dtype: Any, name: str | None,
                 labels: Mapping[str, str] | None, order: str, replace: bool) -> Allocation:
        """An array to fill in place (see :meth:`objects.store.ObjectStore.allocate`)."""
        labels = check_labels(labels)
        if name is not None:
            check_new_name(name)
            if not replace and self.reader.exists(name):
                raise _taken(name)
        record = self.conn.holds.writing() if self.conn.holds else None
        ctx = self.conn.blob_context(labels, allow_pickle=False, record=record)

        def publish(meta: Any) -> ObjectRef:
            if name is None:
                return self.reader.tree_ref(self._create_object(meta, record))
            return self.reader.ref_of(self._name(name, self._layout_entry(meta, labels), replace, record), name)

        try:
            dtype = np.dtype(dtype)
        except TypeError as exc:
            raise UnsupportedType(f"allocate: {exc}; give a numpy dtype such as 'float32'") from None
        return Allocation(ctx, shape, dtype, order, publish=publish, bounded=self.conn.bounded)

    def _name(self, name: str, entry: Entry, replace: bool, record: Writing | None = None) -> Entry:
        """Give ``entry`` the name ``name`` (one transaction); on failure free the entry.
        ``record``: the write in flight, told the name first (the sweeper keeps a named write)."""
        conn = self.conn
        directory = conn.directory
        if record is not None:
            record.naming(name, entry.id)
        try:
            conn.flush_seals()  # a name must point at sealed blobs
            if not replace:
                stored = conn.directory_call(lambda: directory.create(name, entry))
                if stored is None:
                    raise _taken(name)
                return stored
            for _ in range(_REPLACE_TRIES):
                old = conn.directory_call(lambda: directory.get(name))
                stored = conn.directory_call(lambda: directory.swap(name, entry, old))
                if stored is not None:
                    if old is not None and old.id != entry.id:
                        self.drop_entry(old)
                    return stored
            raise ObjectsError(f"name {name!r} kept changing under {_REPLACE_TRIES} replace attempts; try again")
        except BaseException:
            self.drop_entry(entry)
            raise

    def _create_object(self, meta: LayoutMeta, record: Writing | None) -> dict[str, Any]:
        """The Vineyard object of ``meta``, whose blobs this store made: unnamed, seen by
        this node's clients (vineyard's too); its metadata tree."""
        def create(tree: dict[str, Any]) -> tuple[int, int]:
            created = self.conn.ipc.create_data(tree)
            if record is not None:  # a crash before the put returns frees it too
                record.add(object_name(created[0]))
            return created

        return vineyard_tree(meta, self.conn.instance_id, create)

    # -- deleting ------------------------------------------------------------------

    def delete(self, target: ObjectRef | str | int | Any) -> None:
        """Delete an object and its name (see :meth:`objects.store.ObjectStore.delete`)."""
        conn = self.conn
        name, entry, vineyard_id = self.reader.find(target)
        if entry is None:
            tree = self.reader.own_object(vineyard_id)
            entry_id = str(tree["id"]) if tree is not None else object_name(self.reader.meta(vineyard_id, target).id)
            for each, named in conn.directory_call(lambda: conn.directory.entries()):
                if named.id == entry_id:
                    conn.directory_call(lambda: conn.directory.remove(each, named))
            key = object_name(vineyard_id)
            if conn.holds is None:
                conn.delete_ids([key])
            else:
                conn.holds.free(key, [key], conn.delete_ids)
            return
        assert name is not None
        if not conn.directory_call(lambda: conn.directory.remove(name, entry)):
            raise ObjectNotFound(f"object {name!r} was replaced or deleted meanwhile; nothing was deleted")
        self.drop_entry(entry)
