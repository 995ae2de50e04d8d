"""What every codec shares: the writer context, blob helpers and the metadata layout.

Every object this package writes is a vineyard object whose metadata has
``typename`` ``fluidv::<Kind>``, a JSON header under ``fluidv`` and, for
data-bearing kinds, one blob member ``buffer``.
"""

from __future__ import annotations

import bisect
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from objects.errors import StoreFull

HEADER_KEY = "fluidv"
LABELS_KEY = "labels"
TYPENAME_PREFIX = "fluidv::"


#: Blobs at least this large have their pages mapped in one call before they are written.
PREFAULT_MIN = 1 << 20
_PAGE = 4096
_MADV_POPULATE_WRITE = 23  # Linux 5.14+
_madvise: Any = None


#: Page ranges this process has populated already, merged and sorted: [start, end).
_populated: list[tuple[int, int]] = []


def _covered(start: int, end: int) -> bool:
    index = bisect.bisect_right(_populated, (start, sys.maxsize)) - 1
    return index >= 0 and _populated[index][0] <= start and end <= _populated[index][1]


def _remember(start: int, end: int) -> None:
    kept = [(s, e) for s, e in _populated if e < start or s > end]
    merged = [(s, e) for s, e in _populated if not (e < start or s > end)]
    low = min([start] + [s for s, _ in merged])
    high = max([end] + [e for _, e in merged])
    _populated[:] = sorted(kept + [(low, high)])


def prefault(view: memoryview) -> None:
    """Map the pages of ``view`` into this process in one system call
    (``MADV_POPULATE_WRITE``): about 3x faster than faulting them in one by one while
    writing. Pages this process populated before (Vineyard reuses freed memory) are not
    walked again: that costs about 50 ms per GiB. Does nothing where the kernel lacks it."""
    import ctypes  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    global _madvise
    if _madvise is None:
        _madvise = ctypes.CDLL(None, use_errno=True).madvise
        _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if view.nbytes == 0:
        return
    address = np.frombuffer(view, dtype=np.uint8).ctypes.data
    start = address & ~(_PAGE - 1)
    end = address + view.nbytes
    if _covered(start, end):
        return
    if _madvise(start, end - start, _MADV_POPULATE_WRITE) == 0:  # an error leaves faults to writes
        _remember(start, end)


@dataclass
class Context:
    """A connected client plus the things codecs need to report errors well."""

    client: Any  # vineyard.core.client.Client with an IPC client
    node: str
    allow_pickle: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def ipc(self) -> Any:
        return self.client.ipc_client

    def new_blob(self, nbytes: int) -> Any:
        """A writable blob builder of ``nbytes``; StoreFull when the node has no room."""
        import vineyard  # noqa: PLC0415

        try:
            builder = self.ipc.create_blob(nbytes)
        except vineyard.NotEnoughMemoryException:
            status = self.ipc.status
            free = int(status.memory_limit) - int(status.memory_usage)
            raise StoreFull(
                f"node {self.node} cannot hold {nbytes} bytes: {free} of "
                f"{int(status.memory_limit)} bytes are free. Delete objects you no longer need "
                "(store.delete / store.delete_many) or give the node more memory (--size); "
                "nothing was written to another node"
            ) from None
        if nbytes >= PREFAULT_MIN:
            prefault(memoryview(builder))
        return builder

    def seal(self, builder: Any) -> Any:
        return builder.seal(self.client)

    def abort(self, builder: Any) -> None:
        try:
            builder.abort(self.ipc)
        except Exception:  # noqa: BLE001 - releasing is best effort after a failure
            pass

    def empty_blob(self) -> Any:
        return self.ipc.create_empty_blob()

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

    def new_meta(self, kind: str, header: dict[str, Any], nbytes: int) -> Any:
        """An ObjectMeta of our layout, not yet created."""
        import vineyard  # noqa: PLC0415

        meta = vineyard.ObjectMeta()
        for key, value in meta_fields(kind, header, nbytes, self.labels).items():
            meta[key] = value
        return meta

    def create(self, meta: Any) -> Any:
        return self.ipc.create_metadata(meta)


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
    return json.loads(meta[HEADER_KEY])


def labels_of(meta: Any) -> dict[str, str]:
    try:
        return json.loads(meta[LABELS_KEY])
    except (KeyError, ValueError, TypeError, RuntimeError):
        return {}


def blob_view(blob: Any) -> memoryview:
    """A read-only view of a sealed blob's shared memory (empty for empty blobs)."""
    shared = getattr(blob, "shared_view", None)  # a blob a directory layout refers to
    if shared is not None:
        return shared()
    if blob.is_empty or blob.size == 0:
        return memoryview(b"")
    return memoryview(blob)
