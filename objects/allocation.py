"""``store.allocate``: produce an array in place in shared memory, publish on success."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Literal

import numpy as np

from objects.codecs import ndarray
from objects.codecs.base import Context
from objects.errors import ObjectsError
from objects.refs import ObjectRef


class Allocation:
    """Context manager yielding a writable array; sealed and published on clean exit.

    ``with store.allocate((n, m), "float32", "features") as out: out[:] = ...`` writes
    straight into Vineyard memory. If the block raises, the memory is released and
    nothing is published. After the block, ``ref`` is the published object.
    """

    def __init__(
        self,
        ctx: Context,
        shape: int | tuple[int, ...],
        dtype: np.dtype[Any],
        order: str,
        publish: Callable[[Any], ObjectRef],
        bounded: Callable[[str], AbstractContextManager[None]] = lambda _: contextlib.nullcontext(),
    ) -> None:
        self.shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        if any(s < 0 for s in self.shape):
            raise ObjectsError(f"shape {self.shape} has a negative dimension")
        if order not in ("C", "F"):
            raise ObjectsError(f"order must be 'C' or 'F', got {order!r}")
        ndarray.check_dtype(dtype)
        self.dtype, self.order = dtype, order
        self._order: Literal["C", "F"] = "C" if order == "C" else "F"
        self._ctx, self._publish, self._bounded = ctx, publish, bounded
        self._builder: Any = None
        self.ref: ObjectRef | None = None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __enter__(self) -> np.ndarray:
        if self.nbytes == 0:
            return np.empty(self.shape, dtype=self.dtype, order=self._order)
        with self._bounded("allocate"):
            self._builder = self._ctx.new_blob(self.nbytes)
        flat = np.frombuffer(memoryview(self._builder), dtype=self.dtype)
        return flat.reshape(self.shape, order=self._order)

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        builder, self._builder = self._builder, None
        try:
            with self._bounded("the allocation's seal"):
                if exc_type is not None:
                    if builder is not None:
                        self._ctx.abort(builder)
                    return
                blob = self._ctx.seal(builder) if builder is not None else self._ctx.empty_blob()
                meta = self._ctx.new_meta(ndarray.KIND, ndarray.header(self.shape, self.dtype, self.order),
                                          self.nbytes)
                meta.add_member("buffer", blob)
                self.ref = self._publish(self._ctx.create(meta))
        finally:
            if self._ctx.record is not None:  # named, or freed: nothing for the sweeper
                self._ctx.record.done()
