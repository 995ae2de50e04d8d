"""Mapping shared-memory pages into this process in one system call per range.

A process that touches a page of a node's shared memory for the first time takes a
page fault, about 1 µs each here: 0.3 s per GiB. ``populate`` maps a whole range in
one ``madvise`` (``MADV_POPULATE_WRITE`` before writing, ``MADV_POPULATE_READ`` before
reading or sending), about 3x faster, and remembers what it mapped: Vineyard reuses
freed memory, and a range this process has mapped before costs nothing again, unless
vineyardd gave its pages back to the kernel meanwhile (``mincore`` tells).
"""

from __future__ import annotations

import bisect
import sys
import threading
from typing import Any

#: Ranges smaller than this are left to page faults.
POPULATE_MIN = 1 << 20
_PAGE = 4096
_MADV_POPULATE_READ, _MADV_POPULATE_WRITE = 22, 23  # Linux 5.14+
_libc: Any = None
_lock = threading.Lock()
#: Page ranges this process has populated, merged and sorted: [start, end).
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


def populate(view: memoryview, *, write: bool) -> None:
    """Map the pages under ``view`` (at least ``POPULATE_MIN`` bytes) into this process;
    ``write`` when they are about to be written. Does nothing where the kernel lacks it."""
    import ctypes  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    global _libc
    if view.nbytes < POPULATE_MIN:
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    address = np.frombuffer(view, dtype=np.uint8).ctypes.data
    start, end = address & ~(_PAGE - 1), address + view.nbytes
    with _lock:
        covered = _covered(start, end)
    if covered and _resident(start, end):
        return
    advice = _MADV_POPULATE_WRITE if write else _MADV_POPULATE_READ
    if _libc.madvise(start, end - start, advice) == 0:  # an error leaves it to page faults
        with _lock:
            _remember(start, end)


def _resident(start: int, end: int) -> bool:
    """True when every page in [start, end) is in memory (none was given back)."""
    import numpy as np  # noqa: PLC0415

    pages = np.empty((end - start + _PAGE - 1) // _PAGE, dtype=np.uint8)
    if _libc.mincore(start, end - start, pages.ctypes.data) != 0:
        return False
    return bool((pages & 1).all())
