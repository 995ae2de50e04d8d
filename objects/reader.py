"""Reading: what a name, id or ref stands for, and its value, by the one path that fits.

A target resolves once (:meth:`Reader.find`) to a directory entry (a name) or a Vineyard
object id (an unnamed value). An entry's value is read by the path its entry says: kept
inline; blobs of this node, pinned while they are read; blobs another node's blob server
sends (:mod:`objects.remote`); or a Vineyard object through vineyard's own client. A
name whose object is replaced while it is read is read again; a name that is gone is
``ObjectNotFound``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from objects import codecs
from objects.codecs.base import TYPENAME_PREFIX, labels_of
from objects.directory import Entry
from objects.errors import ObjectNotFound, ObjectsError, VineyardClientMissing
from objects.layout import LayoutMeta
from objects.node import NodeConnection
from objects.pinning import reading
from objects.refs import ObjectRef
from objects.remote import RemoteReads, Vanished
from objects.vineyard_client import import_vineyard, loaded_vineyard, vineyard_errors
from vineyard_runtime.node.layouts import tree_blobs, tree_layout
from vineyard_runtime.object_ids import is_inline_id, is_object_name, object_id, object_name

#: vineyard's exceptions of an object that is gone
_MISSING = ("ObjectNotExistsException", "MetaTreeSubtreeNotExistsException")
#: How often ``get`` reads a name again that was replaced while it was being read.
REREADS = 50

#: What a target resolves to: (its name, its directory entry) for a named object, else
#: (None, None, the Vineyard id) of an unnamed one.
Found = tuple[str | None, Entry | None, Any]


class Reader:
    """The read side of one store."""

    def __init__(self, conn: NodeConnection, remote: RemoteReads) -> None:
        self.conn, self.remote = conn, remote

    # -- resolution ----------------------------------------------------------------

    def find(self, target: ObjectRef | str | int | Any) -> Found:
        """(name, directory entry, Vineyard object id) of ``target``: a name gives its
        entry; an id gives an object id; ObjectNotFound when the name is unknown."""
        conn = self.conn
        if isinstance(target, ObjectRef):
            if target.name is not None:
                return self.find(target.name)
            return None, None, object_id(target.id)
        vineyard = loaded_vineyard()
        if vineyard is not None and isinstance(target, vineyard.ObjectID):
            return None, None, int(target)
        if isinstance(target, int) and not isinstance(target, bool):
            if not 0 <= target < 1 << 64:
                raise ObjectNotFound(f"no object {target}: object ids are 0 … 2**64-1")
            return None, None, target
        if isinstance(target, str):
            if is_inline_id(target):
                return self._named_by_id(target)
            if is_object_name(target):
                return None, None, object_id(target)
            entry = conn.directory_call(lambda: conn.directory.get(target))
            if entry is None:
                raise ObjectNotFound(f"no object named {target!r} in the cluster of {conn.node}")
            return target, entry, None
        raise ObjectsError(f"cannot find an object by a {type(target).__name__}; give a name, id or ObjectRef")

    def _named_by_id(self, entry_id: str) -> Found:
        """The name and entry of a named object given by id (one read of the directory)."""
        conn = self.conn
        for name, entry in conn.directory_call(lambda: conn.directory.entries()):
            if entry.id == entry_id:
                return name, entry, None
        raise ObjectNotFound(f"no object {entry_id} in the cluster of {conn.node}")

    def meta(self, vineyard_id: int, what: Any) -> Any:
        """The Vineyard metadata of object ``vineyard_id`` (``what`` the caller named)."""
        conn = self.conn
        try:
            vineyard = import_vineyard()
        except VineyardClientMissing:  # only needed if the object exists
            if conn.is_ipc and not conn.ipc.get_data([vineyard_id], sync_remote=True):
                raise self._not_found(what) from None
            raise
        try:
            return conn.client.get_meta(vineyard.ObjectID(vineyard_id))
        except (vineyard.ObjectNotExistsException, vineyard.MetaTreeSubtreeNotExistsException):
            raise self._not_found(what) from None

    def _not_found(self, what: Any) -> ObjectNotFound:
        conn = self.conn
        hint = ""
        if isinstance(what, ObjectRef) and what.name is None and what.instance_id != conn.instance_id:
            hint = (f"; it is unnamed and was made on {what.node}: unnamed objects are seen "
                    "only by their node, so put it with a name to share it across nodes")
        return ObjectNotFound(f"no object {what} known to {conn.node}{hint}")

    def own_object(self, vineyard_id: int) -> dict[str, Any] | None:
        """The metadata tree of object ``vineyard_id`` when this package wrote it on this
        node; None for any other (vineyard's client reads those)."""
        conn = self.conn
        if not conn.is_ipc:
            return None
        tree = conn.ipc.get_data([vineyard_id]).get(vineyard_id)
        if (tree is None or not str(tree.get("typename", "")).startswith(TYPENAME_PREFIX)
                or int(tree.get("instance_id", -1)) != conn.instance_id):
            return None
        return tree

    def alive(self, entry: Entry) -> bool:
        """True unless the entry's value lived on a node that is gone."""
        conn = self.conn
        if not entry.on_node or entry.instance_id == conn.instance_id:
            return True
        return entry.instance_id in conn.directory_call(conn.directory.instances)

    # -- refs ----------------------------------------------------------------------

    def ref_of(self, entry: Entry, name: str | None) -> ObjectRef:
        return ObjectRef(id=entry.id, name=name, typename=entry.typename, nbytes=entry.nbytes,
                         node=entry.node, instance_id=entry.instance_id, labels=dict(entry.labels))

    def tree_ref(self, tree: dict[str, Any]) -> ObjectRef:
        instance_id = int(tree["instance_id"])
        return ObjectRef(id=str(tree["id"]), name=None, typename=str(tree["typename"]),
                         nbytes=int(tree.get("nbytes", 0)), node=self.conn.node_name(instance_id),
                         instance_id=instance_id, labels=labels_of(tree))

    def _meta_ref(self, meta: Any) -> ObjectRef:
        return ObjectRef(id=object_name(meta.id), name=None, typename=str(meta.typename), nbytes=int(meta.nbytes),
                         node=self.conn.node_name(int(meta.instance_id)), instance_id=int(meta.instance_id),
                         labels=labels_of(meta))

    def info(self, target: ObjectRef | str | int | Any) -> ObjectRef:
        """The ref of ``target`` (ObjectNotFound naming the lost node when its node is gone)."""
        name, entry, vineyard_id = self.find(target)
        if entry is None:
            tree = self.own_object(vineyard_id)
            return self.tree_ref(tree) if tree is not None else self._meta_ref(self.meta(vineyard_id, target))
        if not self.alive(entry):
            self.remote.owner(entry)  # raises ObjectNotFound naming the lost node
        return self.ref_of(entry, name)

    def exists(self, target: ObjectRef | str | int | Any) -> bool:
        """True when ``target`` is known to the cluster (and its node is up)."""
        try:
            self.info(target)
        except ObjectNotFound:
            return False
        return True

    # -- values --------------------------------------------------------------------

    def get(self, target: ObjectRef | str | int | Any, allow_pickle: bool) -> Any:
        """The value of ``target`` (see :meth:`objects.store.ObjectStore.get`)."""
        name, entry, vineyard_id = self.find(target)
        if entry is None:
            return self._unnamed(vineyard_id, target, allow_pickle)
        assert name is not None  # an entry is only found by its name
        conn = self.conn
        for _ in range(REREADS):
            try:
                return self.load_entry(entry, allow_pickle=allow_pickle, name=name)
            except Vanished:
                pass
            again = conn.directory_call(lambda: conn.directory.get(name))  # replaced or deleted meanwhile?
            if again is None or again.revision == entry.revision:
                raise ObjectNotFound(f"object {name!r} was deleted while it was being read")
            entry = again  # replaced: read the new value
        raise ObjectsError(f"object {name!r} was replaced {REREADS} times while it was being read; read it "
                           "when its writer pauses, or give each version a name of its own")

    def _unnamed(self, vineyard_id: int, target: Any, allow_pickle: bool) -> Any:
        """An unnamed object: this package's on this node, else Vineyard's (migrated here
        from another node, or copied over RPC)."""
        conn = self.conn
        with reading(conn.pin(object_name(vineyard_id)) if conn.is_ipc else None, conn.delete_ids):
            tree = self.own_object(vineyard_id)
            if tree is not None:
                return self._decode_tree(tree, allow_pickle)
            meta = self.meta(vineyard_id, target)
            if not conn.is_ipc:
                meta = conn.client.rpc_client.get_object(meta.id).meta  # copies the blobs over RPC
            elif int(meta.instance_id) != conn.instance_id:
                meta = conn.migrate_here(meta)
            return codecs.decode(conn.client, meta, allow_pickle=allow_pickle)

    def _decode_tree(self, tree: dict[str, Any], allow_pickle: bool) -> Any:
        """The value of an object this package wrote on this node, its blobs got in one
        round trip and read in place."""
        ids = tree_blobs(tree)
        view = self.conn.node_blobs(ids, lambda: ObjectNotFound(f"object {tree['id']} was deleted while it was being read"))
        layout = tree_layout(tree, {blob: view(blob).nbytes for blob in ids})
        return codecs.decode(None, LayoutMeta.from_json(layout, view), allow_pickle=allow_pickle)

    def load_entry(self, entry: Entry, *, allow_pickle: bool = False, name: str | None = None,
                   blobs: Callable[[str], Any] | None = None) -> Any:
        """The value an entry describes (raises Vanished when its object is gone);
        ``blobs``: where to take the blobs of a layout entry, when already fetched (from
        this node's memory, pinned meanwhile, or copies in this process from another's)."""
        conn = self.conn
        mine = entry.instance_id == conn.instance_id
        pin = conn.pin(entry.hold_key) if entry.on_node and conn.is_ipc and (blobs is None or mine) else None
        try:
            with reading(pin, conn.delete_ids):
                return self._load(entry, allow_pickle, name, blobs)
        except vineyard_errors(*_MISSING):
            raise Vanished(entry.id) from None
        except RuntimeError:  # vineyard's report of a blob deleted between metadata and data
            if entry.layout is None and conn.is_ipc and mine:
                vineyard = import_vineyard()  # only vineyard's client raises this
                if not conn.client.ipc_client.exists(vineyard.ObjectID(entry.id)):
                    raise Vanished(entry.id) from None
            raise

    def _load(self, entry: Entry, allow_pickle: bool, name: str | None, blobs: Callable[[str], Any] | None) -> Any:
        """Read ``entry`` by the path it needs (``load_entry`` pins it and reports what vanished)."""
        conn = self.conn
        if entry.layout is not None:
            layout = (LayoutMeta.from_json(entry.layout, blobs) if blobs is not None or not entry.blobs
                      else self.remote.layout(entry, name))
            return codecs.decode(None, layout, allow_pickle=allow_pickle)
        # a Vineyard object (a client of Vineyard's own wrote it): through that client
        vineyard_id = import_vineyard().ObjectID(entry.id)
        if not conn.is_ipc:
            meta = conn.client.rpc_client.get_object(vineyard_id).meta  # copies the blobs over RPC
        elif entry.instance_id == conn.instance_id:
            meta = conn.client.get_meta(vineyard_id)
        elif (name is not None and entry.typename.startswith(TYPENAME_PREFIX)  # a layout this package decodes
              and (endpoint := self.remote.blob_endpoint(entry.instance_id)) is not None):
            meta = self.remote.replica(entry, name, endpoint)
        else:
            meta = self.remote.migrate_in(entry, vineyard_id)
        return codecs.decode(conn.client, meta, allow_pickle=allow_pickle)
