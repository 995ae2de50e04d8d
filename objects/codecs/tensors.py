"""torch CPU tensors, shared through numpy views (torch is imported only if used)."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np

from objects.codecs import ndarray
from objects.codecs.base import Context
from objects.errors import UnsupportedType

# torch dtypes numpy lacks travel as same-width integers.
_REINTERPRET = {"torch.bfloat16": "int16"}


def is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def encode(ctx: Context, tensor: Any) -> Any:
    import torch  # noqa: PLC0415

    if tensor.device.type != "cpu":
        raise UnsupportedType(f"a torch tensor on {tensor.device} cannot be shared; move it with .cpu()")
    if tensor.is_sparse or tensor.layout != torch.strided:
        raise UnsupportedType("sparse torch tensors are not supported; call .to_dense()")
    tensor = tensor.detach().resolve_conj().resolve_neg()
    dtype_name = str(tensor.dtype)
    if dtype_name in _REINTERPRET:
        array = tensor.view(getattr(torch, _REINTERPRET[dtype_name])).numpy()
    else:
        array = tensor.numpy()
    return ndarray.encode(ctx, array, torch_dtype=dtype_name)


def decode(array: np.ndarray, torch_dtype: str) -> Any:
    import torch  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only shared memory
        tensor = torch.from_numpy(array) if array.ndim else torch.from_numpy(np.array(array))
    if torch_dtype in _REINTERPRET:
        tensor = tensor.view(getattr(torch, torch_dtype.removeprefix("torch.")))
    return tensor
