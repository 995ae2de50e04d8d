"""``ObjectStore``: put, get, allocate, list and delete objects on one Vineyard node.

The store is a facade: its connection to the node (:mod:`objects.node`), which it is,
and its read and write sides (:mod:`objects.reader`, :mod:`objects.writer`), which share
the reads of other nodes (:mod:`objects.remote`); streams are :mod:`objects.streams`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from objects.allocation import Allocation
from objects.connection import Target
from objects.directory import Directory
from objects.errors import ObjectNotFound, ObjectsError
from objects.ipc import VineyardIPC
from objects.listing import Listing
from objects.names import RESERVED_PREFIX, check_new_name
from objects.node import NodeConnection
from objects.reader import Reader
from objects.refs import ObjectRef
from objects.remote import RemoteReads
from objects.streams import StreamReader, StreamWriter, delete_stream
from objects.writer import Writer, check_labels

#: How many prefixes' listings a store keeps to read again only what changed.
_LISTINGS_KEPT = 16


def _bounded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a store method under its node's deadline (see :mod:`vineyard_runtime.plumbing.deadline`)."""

    @functools.wraps(method)
    def call(self: "ObjectStore", *args: Any, **kwargs: Any) -> Any:
        with self.bounded(method.__name__):
            return method(self, *args, **kwargs)

    return call


class ObjectStore(NodeConnection):
    """A connection to one Vineyard node (made by :func:`objects.connect`).

    Names live in the cluster's object directory (:mod:`objects.directory`): a named
    put is one etcd transaction, a small value is kept whole in its entry, and a large
    one is blobs of this node whose layout the entry holds, received into another node's
    memory when a reader there asks for it.
    """

    def __init__(self, target: Target, directory: Directory | None = None, *,
                 ipc: VineyardIPC | None = None, client: Any = None) -> None:
        """A store of ``target`` (see :class:`~objects.node.NodeConnection`) with its
        read and write sides."""
        super().__init__(target, directory, ipc=ipc, client=client)
        self.remote = RemoteReads(self)
        self.reader = Reader(self, self.remote)
        self.writer = Writer(self, self.reader, self.remote)
        self._listings: dict[str, Listing] = {}

    def close(self) -> None:
        """Disconnect (the connection stays while other stores of this process use it);
        arrays already returned stay valid."""
        if not self._closed:
            self.remote.close()
        super().close()

    def __enter__(self) -> "ObjectStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ObjectStore({self.target.describe()})"

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
        return self.writer.put(value, name, labels, replace, allow_pickle)

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
        return self.writer.allocate(shape, dtype, name, labels, order, replace)

    # -- reading -------------------------------------------------------------------

    @_bounded
    def get(self, target: ObjectRef | str | int | Any, *, allow_pickle: bool = False) -> Any:
        """The value of an object given by ref, name or id.

        Numeric data comes back as read-only views of shared memory. An object held by
        another node is first migrated to this node (one transfer, then zero copy). Over
        an RPC connection the data is copied to this process instead.
        """
        return self.reader.get(target, allow_pickle)

    @_bounded
    def info(self, target: ObjectRef | str | int | Any) -> ObjectRef:
        """Id, name, type, size, node and labels of an object."""
        return self.reader.info(target)

    @_bounded
    def exists(self, target: ObjectRef | str | int | Any) -> bool:
        """True when the object is known to the cluster (and its node is up)."""
        return self.reader.exists(target)

    def list(self, prefix: str | None = None, labels: Mapping[str, str] | None = None) -> list[ObjectRef]:
        """Named objects, optionally those whose name starts with ``prefix`` and that carry
        every label in ``labels``; sorted by name. Objects of nodes that are gone are left out.

        One read of what changed since this store's last listing of ``prefix`` (see
        :mod:`objects.listing`), whatever the number of objects."""
        if prefix is not None and not isinstance(prefix, str):
            raise ObjectsError(f"prefix must be a string, got {type(prefix).__name__}")
        wanted = check_labels(labels)
        listing = self._listings.pop(prefix or "", None) or Listing(prefix or "", self.reader.ref_of)
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

    @_bounded
    def delete(self, target: ObjectRef | str | int | Any) -> None:
        """Delete an object (and its name); ObjectNotFound when unknown."""
        self.writer.delete(target)

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
        check_new_name(name)
        return StreamWriter(self.writer, name, check_labels(labels))

    def open_reader(self, name: str, *, timeout: float | None = None,
                    idle_timeout: float | None = None) -> StreamReader:
        """Iterate over stream ``name`` while it is written (waits up to ``timeout`` for it
        to start); raises StreamFailed if its producer fails or vanishes."""
        check_new_name(name)
        return StreamReader(self.reader, name, timeout=timeout, idle_timeout=idle_timeout)

    def delete_stream(self, name: str) -> int:
        """Delete every chunk and marker of stream ``name``; return how many records."""
        return delete_stream(self.writer, name)
