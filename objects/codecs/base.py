"""What every codec shares: the writer context, blob helpers and the metadata layout.

Every value this package writes has metadata (a layout: :mod:`objects.layout`) whose
``typename`` is ``fluidv::<Kind>``, with a JSON header under ``fluidv`` and, for
data-bearing kinds, one blob member ``buffer``. It lives in a directory entry, or, for
an unnamed value, as a Vineyard object of its node.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from objects.errors import StoreFull
from objects.pinning import held_view
from vineyard_runtime.node.holds import Writing
from vineyard_runtime.node.pages import populate
from vineyard_runtime.object_ids import object_name

HEADER_KEY = "fluidv"
LABELS_KEY = "labels"
TYPENAME_PREFIX = "fluidv::"


def node_full(node: str, nbytes: int, limit: int, usage: int) -> StoreFull:
    """The error of a node that has no room for a blob of ``nbytes``."""
    return StoreFull(
        f"node {node} cannot hold {nbytes} bytes: {limit - usage} of {limit} bytes are free. "
        "Delete objects you no longer need (store.delete / store.delete_many) or give the node "
        "more memory (--size); nothing was written to another node"
    )


@dataclass
class Context:
    """Where a codec writes a value: new blobs and metadata of one layout (the kinds in
    :mod:`objects.layout`), plus what codecs need to report errors well."""

    node: str
    allow_pickle: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    #: the record of this write's blobs, freed by the node's sweeper if the writer dies
    record: Writing | None = None

    def new_blob(self, nbytes: int) -> Any:
        """A writable blob builder of ``nbytes``, recorded for the sweeper and mapped in;
        StoreFull when the node has no room."""
        builder = self._create(nbytes)
        if self.record is not None:
            self.record.add(object_name(builder.id))
        populate(memoryview(builder), write=True)
        return builder

    def _create(self, nbytes: int) -> Any:
        """A new writable blob (with its ``id``)."""
        raise NotImplementedError

    def seal(self, builder: Any) -> Any:
        """The blob ``builder`` made, final: what a layout's member holds."""
        raise NotImplementedError

    def abort(self, builder: Any) -> None:
        """Free ``builder`` after a failure (best effort)."""
        raise NotImplementedError

    def empty_blob(self) -> Any:
        raise NotImplementedError

    def new_meta(self, kind: str, header: dict[str, Any], nbytes: int) -> Any:
        """The metadata of a new value of ``kind`` (members are added to it)."""
        raise NotImplementedError

    def create(self, meta: Any) -> Any:
        """``meta``, complete: what its parent adds as a member, or what encoding returns."""
        raise NotImplementedError

    def blob_from_bytes(self, data: memoryview) -> Any:
        """Copy ``data`` (a C-contiguous byte view) into a new sealed blob."""
        if data.nbytes == 0:
            return self.empty_blob()
        builder = self.new_blob(data.nbytes)
        try:
            memoryview(builder).cast("B")[:] = data.cast("B")
        except BaseException:
            self.abort(builder)
            raise
        return self.seal(builder)


def meta_fields(kind: str, header: dict[str, Any], nbytes: int, labels: dict[str, str]) -> dict[str, Any]:
    """The fields of every object this package writes (see the module doc)."""
    return {
        "typename": TYPENAME_PREFIX + kind,
        "nbytes": int(nbytes),
        HEADER_KEY: json.dumps(dict(header, kind=kind)),
        LABELS_KEY: json.dumps(labels),
    }


def header_of(meta: Any) -> dict[str, Any] | None:
    """Our JSON header of ``meta``, or None for objects other writers made."""
    if not str(meta.typename).startswith(TYPENAME_PREFIX):
        return None
    header: dict[str, Any] = json.loads(meta[HEADER_KEY])
    return header


def labels_of(meta: Any) -> dict[str, str]:
    try:
        labels: dict[str, str] = json.loads(meta[LABELS_KEY])
        return labels
    except (KeyError, ValueError, TypeError, RuntimeError):
        return {}


#: Blobs at least this large are filled by several threads: one core does not use all
#: of the memory's bandwidth.
PARALLEL_COPY_MIN = 8 << 20
_COPY_THREADS = max(1, min(4, len(os.sched_getaffinity(0))))


def blob_writer(builder: Any) -> Any:
    """An Arrow writer over a new blob's memory; large writes copy with several threads."""
    import pyarrow as pa  # noqa: PLC0415

    view = memoryview(builder)
    writer = pa.FixedSizeBufferWriter(pa.py_buffer(view))
    if view.nbytes >= PARALLEL_COPY_MIN:
        writer.set_memcopy_threads(_COPY_THREADS)
    return writer


def blob_view(blob: Any) -> memoryview:
    """A read-only view of a sealed blob's shared memory (empty for empty blobs), which
    holds the current read's pin while it lives (:mod:`objects.pinning`)."""
    shared = getattr(blob, "shared_view", None)  # a blob a directory layout refers to
    if shared is not None:
        return held_view(shared()) if getattr(blob, "blob", None) is not None else shared()
    if blob.is_empty or blob.size == 0:
        return memoryview(b"")
    return held_view(memoryview(blob))
