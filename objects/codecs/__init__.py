"""Turn Python values into vineyard objects and back.

``encode`` picks the adaptor for a value: registered custom types, numpy, Arrow,
pandas, torch, then nested dict/list/tuple structures whose leaves each become a
member object; anything else needs ``allow_pickle=True``.
"""

from __future__ import annotations

import base64
import math
import pickle
import sys
from typing import Any

import numpy as np

from objects.codecs import arrow, foreign, frames, ndarray, registry, tensors
from objects.codecs.base import Context, blob_view, header_of
from objects.errors import ObjectsError, UnsupportedType

MAX_DEPTH = 64
NESTED = "Nested"
CUSTOM = "Custom"
PICKLE = "Pickle"


def _is_arrow(value: Any) -> bool:
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(value, (pa.Table, pa.RecordBatch, pa.ChunkedArray, pa.Array))


def _is_pandas(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, (pd.DataFrame, pd.Series))


def inline(value: Any) -> dict[str, Any] | None:
    """JSON form of a plain scalar (None, bool, str, int, float, bytes), or None when
    ``value`` is not one; ``from_inline`` restores it."""
    if value is None or isinstance(value, (bool, str)):
        return {"t": "v", "v": value}
    if isinstance(value, int):
        return {"t": "v", "v": value}
    if isinstance(value, float):
        return {"t": "f", "v": repr(value)} if not math.isfinite(value) else {"t": "v", "v": value}
    if isinstance(value, bytes):
        return {"t": "b", "v": base64.b64encode(value).decode()}
    return None


def from_inline(node: dict[str, Any]) -> Any:
    """The scalar whose JSON form ``inline`` made."""
    if node["t"] == "f":
        return float(node["v"])
    if node["t"] == "b":
        return base64.b64decode(node["v"])
    return node["v"]


def dict_key(key: Any) -> list[Any]:
    """JSON form ``[type, key]`` of a dict key (its type survives JSON); ``key[1]`` restores it."""
    for kind, cls in (("b", bool), ("i", int), ("s", str), ("f", float)):
        if type(key) is cls:
            return [kind, key]
    if key is None:
        return ["n", None]
    raise UnsupportedType(f"dict keys must be str, int, float, bool or None, got {type(key).__name__}")


def encode(ctx: Context, value: Any) -> Any:
    """Create the vineyard object(s) for ``value``; return the created metadata."""
    custom = registry.for_value(value)
    if custom is not None:
        parts = encode(ctx, custom.to_parts(value))
        meta = ctx.new_meta(CUSTOM, {"type": custom.name}, int(parts.nbytes))
        meta.add_member("parts", parts)
        return ctx.create(meta)
    if isinstance(value, np.ndarray):
        return ndarray.encode(ctx, value)
    if isinstance(value, np.generic):
        return ndarray.encode(ctx, np.asarray(value), scalar=True)
    if _is_arrow(value):
        return arrow.encode(ctx, value)
    if _is_pandas(value):
        return frames.encode(ctx, value)
    if tensors.is_tensor(value):
        return tensors.encode(ctx, value)
    if isinstance(value, (dict, list, tuple)) or inline(value) is not None:
        return _encode_nested(ctx, value)
    if ctx.allow_pickle:
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        blob = ctx.blob_from_bytes(memoryview(payload))
        meta = ctx.new_meta(PICKLE, {"type": registry.qualified_name(type(value))}, len(payload))
        meta.add_member("buffer", blob)
        return ctx.create(meta)
    raise UnsupportedType(
        f"values of type {registry.qualified_name(type(value))} have no zero-copy adaptor; "
        "use numpy, Arrow, pandas, torch or dict/list/tuple of them, register the type with "
        "objects.register(), or pass allow_pickle=True to store it pickled"
    )


def _encode_nested(ctx: Context, value: Any) -> Any:
    members: list[Any] = []
    total = 0

    def walk(item: Any, depth: int) -> dict[str, Any]:
        nonlocal total
        if depth > MAX_DEPTH:
            raise UnsupportedType(f"structure nested deeper than {MAX_DEPTH} levels (a cycle?)")
        scalar = inline(item)
        if scalar is not None:
            return scalar
        if isinstance(item, dict):
            return {"t": "d", "k": [dict_key(k) for k in item], "v": [walk(v, depth + 1) for v in item.values()]}
        if isinstance(item, list):
            return {"t": "l", "v": [walk(v, depth + 1) for v in item]}
        if isinstance(item, tuple) and type(item) is tuple:
            return {"t": "t", "v": [walk(v, depth + 1) for v in item]}
        member = encode(ctx, item)
        members.append(member)
        total += int(member.nbytes)
        return {"t": "m", "m": len(members) - 1}

    structure = walk(value, 0)
    meta = ctx.new_meta(NESTED, {"structure": structure}, total)
    for index, member in enumerate(members):
        meta.add_member(f"m{index}", member)
    return ctx.create(meta)


def decode(client: Any, meta: Any, *, allow_pickle: bool = False) -> Any:
    """The Python value of ``meta`` (numeric buffers are views of shared memory)."""
    if not hasattr(meta, "typename") or hasattr(meta, "member") and not hasattr(meta, "get_member"):
        meta = meta.meta  # a member Object: work on its metadata
    head = header_of(meta)
    if head is None:
        return foreign.decode_foreign(client, meta, allow_pickle=allow_pickle)  # written by plain vineyard
    kind = head["kind"]
    if kind == ndarray.KIND:
        array = ndarray.decode(meta, head)
        return tensors.decode(array, head["torch_dtype"]) if "torch_dtype" in head else array
    if kind == arrow.KIND:
        return arrow.decode(meta, head)
    if kind == frames.KIND:
        return frames.decode(meta, head)
    if kind == NESTED:
        return _decode_nested(client, meta, head["structure"], allow_pickle)
    if kind == CUSTOM:
        entry = registry.by_name(head["type"])
        return entry.from_parts(decode(client, meta.member("parts"), allow_pickle=allow_pickle))
    if kind == PICKLE:
        if not allow_pickle:
            raise UnsupportedType(
                f"this object holds a pickled {head['type']}; loading a pickle runs code from "
                "the store, so pass allow_pickle=True if you trust its writer"
            )
        return pickle.loads(blob_view(meta.member("buffer")))
    raise ObjectsError(f"object {meta.id} has kind {kind!r}, unknown to this version of objects")


def _decode_nested(client: Any, meta: Any, structure: dict[str, Any], allow_pickle: bool) -> Any:
    def build(node: dict[str, Any]) -> Any:
        tag = node["t"]
        if tag in ("v", "f", "b"):
            return from_inline(node)
        if tag == "d":
            return {k[1]: build(v) for k, v in zip(node["k"], node["v"])}
        if tag == "l":
            return [build(v) for v in node["v"]]
        if tag == "t":
            return tuple(build(v) for v in node["v"])
        return decode(client, meta.member(f"m{node['m']}"), allow_pickle=allow_pickle)

    return build(structure)


__all__ = ["Context", "decode", "dict_key", "encode", "from_inline", "inline", "registry"]
