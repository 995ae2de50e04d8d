"""Populating shared-memory pages: remembered ranges are walked again once their pages
were given back to the kernel (as vineyardd does when its memory is cleared)."""

from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np

from vineyard_runtime.node import pages

SIZE = 8 << 20
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 1, 2


def _resident_fraction(view: memoryview) -> float:
    address = np.frombuffer(view, dtype=np.uint8).ctypes.data
    vector = np.empty(view.nbytes // 4096, dtype=np.uint8)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(view.nbytes), vector.ctypes.data_as(ctypes.c_void_p)) == 0
    return float((vector & 1).mean())


def test_a_range_given_back_is_populated_again():
    fd = os.memfd_create("fluidv-pages-test")
    try:
        os.ftruncate(fd, SIZE)
        with mmap.mmap(fd, SIZE) as mapping:
            view = memoryview(mapping)
            pages.populate(view, write=True)
            assert _resident_fraction(view) == 1.0
            libc = ctypes.CDLL(None, use_errno=True)
            assert libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, ctypes.c_long(0),
                                  ctypes.c_long(SIZE)) == 0
            assert _resident_fraction(view) == 0.0
            pages.populate(view, write=True)  # remembered, but no longer resident
            assert _resident_fraction(view) == 1.0
            view.release()
    finally:
        os.close(fd)


def test_small_ranges_are_left_to_page_faults():
    with mmap.mmap(-1, pages.POPULATE_MIN // 2) as mapping:
        view = memoryview(mapping)
        pages.populate(view, write=False)
        assert _resident_fraction(view) == 0.0
        view.release()
