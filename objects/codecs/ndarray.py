"""numpy arrays: one blob holding the array's bytes in its own order (C or Fortran)."""

from __future__ import annotations

from typing import Any

import numpy as np

from objects.codecs.base import Context, blob_view, blob_writer
from objects.errors import UnsupportedType

KIND = "NDArray"


def _descr_to_json(dtype: np.dtype) -> Any:
    return np.lib.format.dtype_to_descr(dtype)


def _descr_from_json(descr: Any) -> np.dtype:
    def fix(value: Any) -> Any:
        if isinstance(value, list):
            return [tuple(fix(v) for v in item) if isinstance(item, list) else item for item in value]
        return value

    if isinstance(descr, list):
        fields: np.dtype[Any] = np.lib.format.descr_to_dtype(
            [tuple(fix(v) if isinstance(v, list) else v for v in field) for field in descr]
        )
        return fields
    plain: np.dtype[Any] = np.dtype(descr)
    return plain


def check_dtype(dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise UnsupportedType(
            "numpy arrays of Python objects (dtype=object) have no zero-copy layout; convert "
            "them (e.g. strings to an Arrow array) or pass allow_pickle=True"
        )


def layout(array: np.ndarray) -> tuple[np.ndarray, str]:
    """The array made contiguous once if needed, and its order."""
    if array.flags.c_contiguous:
        return array, "C"
    if array.flags.f_contiguous:
        return array, "F"
    return np.ascontiguousarray(array), "C"


def header(shape: tuple[int, ...], dtype: np.dtype, order: str, **extra: Any) -> dict[str, Any]:
    return {"shape": list(shape), "dtype": _descr_to_json(dtype), "order": order, **extra}


def view(blob_memory: memoryview, head: dict[str, Any]) -> np.ndarray:
    """The array described by ``head`` over ``blob_memory`` (no copy)."""
    dtype = _descr_from_json(head["dtype"])
    shape = tuple(head["shape"])
    count = int(np.prod(shape, dtype=np.int64))
    if count == 0 or dtype.itemsize == 0:
        return np.empty(shape, dtype=dtype, order=head["order"])
    flat = np.frombuffer(blob_memory, dtype=dtype, count=count)
    return flat.reshape(shape, order=head["order"])


def encode(ctx: Context, array: np.ndarray, **extra: Any) -> Any:
    check_dtype(array.dtype)
    array, order = layout(array)
    if array.nbytes == 0:
        blob = ctx.empty_blob()
    else:
        builder = ctx.new_blob(array.nbytes)
        try:
            blob_writer(builder).write(array.ravel(order="A").view(np.uint8))  # no copy: contiguous
        except BaseException:
            ctx.abort(builder)
            raise
        blob = ctx.seal(builder)
    meta = ctx.new_meta(KIND, header(array.shape, array.dtype, order, **extra), array.nbytes)
    meta.add_member("buffer", blob)
    return ctx.create(meta)


def decode(meta: Any, head: dict[str, Any]) -> np.ndarray:
    array = view(blob_view(meta.member("buffer")), head)
    if head.get("scalar"):
        return array[()]
    return array

