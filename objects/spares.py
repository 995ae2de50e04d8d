"""Blobs made ahead for a writer whose values repeat their size, as a stream's chunks do.

Each blob a writer makes costs a round trip to vineyardd. When a size is asked twice in
a row, the next blobs of it are made in the same round trip (up to ``AHEAD``, at most
``SPARE_BYTES`` together) and handed out as values of that size come. vineyardd does not
free a client's unsealed blobs when it goes, so every blob made ahead is in the writer's
record (:class:`~vineyard_runtime.node.holds.Writing`) before it is handed out: if the
writer dies, the node's sweeper frees those it had not published.
"""

from __future__ import annotations

import contextlib

from objects.errors import ObjectsError, StoreFull
from objects.ipc import VineyardIPC
from vineyard_runtime.node.holds import Writing
from vineyard_runtime.node.ipc import Blob

#: most blobs made in one round trip, and most bytes kept spare
AHEAD, SPARE_BYTES = 16, 4 << 20


class Spares:
    """The blobs one writer made ahead, by size."""

    def __init__(self, ipc: VineyardIPC, record: Writing | None) -> None:
        self.ipc, self.record = ipc, record
        self._free: dict[int, list[Blob]] = {}
        self._last: int | None = None

    def take(self, nbytes: int) -> Blob:
        """A new writable blob of ``nbytes``: made ahead, else made now (with spares of
        its size when the size repeats); StoreFull when the node has no room."""
        ready = self._free.get(nbytes)
        if ready:
            return ready.pop()
        count = min(AHEAD, max(1, SPARE_BYTES // max(nbytes, 1))) if nbytes == self._last else 1
        self._last = nbytes
        self.drop()  # spares of another size: that size no longer repeats
        try:
            made = self.ipc.create_blobs([nbytes] * count)
        except StoreFull:
            if count == 1:
                raise
            made = self.ipc.create_blobs([nbytes])  # no room to make ahead: one at a time
        if self.record is not None:
            for blob in made:
                self.record.add(blob.name)
        self._free[nbytes] = made[1:][::-1]
        return made[0]

    def drop(self) -> None:
        """Delete the blobs made ahead and not handed out (best effort)."""
        unused = [blob.id for blobs in self._free.values() for blob in blobs]
        self._free.clear()
        if unused:
            with contextlib.suppress(ObjectsError):
                self.ipc.delete(unused)


__all__ = ["AHEAD", "SPARE_BYTES", "Spares"]
