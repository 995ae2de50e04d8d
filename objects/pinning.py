"""Zero-copy views that keep what they show pinned (see :mod:`vineyard_runtime.node.holds`).

A read runs inside :func:`reading`; every blob view a codec takes meanwhile
(``codecs.base.blob_view``) is exported by a small read-only array that holds the pin,
and whatever the value is built from (numpy views, Arrow buffers, torch tensors) keeps
that array alive. When the last of them is gone the pin is released, and a delete that
came meanwhile frees the memory then.
"""

from __future__ import annotations

import contextlib
import contextvars
import weakref
from collections.abc import Iterator
import numpy as np

from vineyard_runtime.node.holds import Delete, Pin

_reading: contextvars.ContextVar["_Scope | None"] = contextvars.ContextVar("fluidv_reading", default=None)


class _Scope:
    """The pin of one read, counted: one for the read itself, one per live view."""

    def __init__(self, pin: Pin, delete: Delete) -> None:
        self.pin, self.delete, self.count = pin, delete, 1

    def take(self) -> None:
        self.count += 1

    def drop(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.pin.release(self.delete)


class _PinnedBytes(np.ndarray):
    """A read-only byte array over a blob; while it lives, its read's pin is held."""


@contextlib.contextmanager
def reading(pin: Pin | None, delete: Delete) -> Iterator[None]:
    """Views taken in the block hold ``pin`` (None: nothing to hold) until they die;
    ``delete`` frees the object if it was deleted meanwhile and they were its last readers."""
    if pin is None:
        yield
        return
    scope = _Scope(pin, delete)
    token = _reading.set(scope)
    try:
        yield
    finally:
        _reading.reset(token)
        scope.drop()


def held_view(view: memoryview) -> memoryview:
    """``view`` (read-only), exported by an array holding the current read's pin, if any."""
    scope = _reading.get()
    if scope is None or view.nbytes == 0:
        return view
    holder = np.frombuffer(view.cast("B") if view.format != "B" else view, np.uint8).view(_PinnedBytes)
    holder.flags.writeable = False
    scope.take()
    weakref.finalize(holder, scope.drop)
    return holder.data  # a view whose exporter is the holder: it lives as long as the view


__all__ = ["held_view", "reading"]
