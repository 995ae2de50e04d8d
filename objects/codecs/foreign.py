"""Objects that plain vineyard wrote: decoded by vineyard's own resolvers, but only
when every part of them is plain data.

vineyard resolves ``vineyard::PickleBuffer`` (its fallback for any Python value) and a
``vineyard::Tensor`` of ``object`` values with ``pickle.loads``: reading such an object
runs whatever code its writer put in it. Only the types below, whose resolvers build
arrays, tables and scalars from buffers, are read without ``allow_pickle=True``; any
member of any other type, at any depth, makes the read refuse.
"""

from __future__ import annotations

from typing import Any

from objects.errors import ObjectsError, UnsupportedType

#: vineyard's types whose Python resolvers never unpickle (by name, before any ``<…>``)
DATA_ONLY = frozenset({
    "vineyard::Blob", "vineyard::RemoteBlob", "vineyard::Scalar", "vineyard::Array",
    "vineyard::Sequence", "vineyard::Tensor", "vineyard::NumericArray", "vineyard::BooleanArray",
    "vineyard::NullArray", "vineyard::FixedSizeBinaryArray", "vineyard::BaseBinaryArray",
    "vineyard::LargeBinaryArray", "vineyard::LargeStringArray", "vineyard::LargeListArray",
    "vineyard::SchemaProxy", "vineyard::RecordBatch", "vineyard::Table", "vineyard::DataFrame",
    "vineyard::Index",
})
MAX_PARTS = 100_000
MAX_DEPTH = 64


def _code_in(meta: Any) -> str | None:
    """What in ``meta``'s tree would run code when resolved (None: plain data)."""
    stack, seen = [(meta, 0)], 0
    while stack:
        part, depth = stack.pop()
        seen += 1
        if seen > MAX_PARTS or depth > MAX_DEPTH:
            return f"more than {MAX_PARTS} parts or {MAX_DEPTH} levels"
        typename = str(getattr(part, "typename", "vineyard::Blob"))  # a layout's blobs have no typename
        if typename.split("<", 1)[0] not in DATA_ONLY:
            return f"a {typename}"
        fields, members = _fields_and_members(part)
        if typename.startswith("vineyard::Tensor") and str(fields.get("value_type_", "")) == "object":
            return "a tensor of pickled Python objects"
        stack.extend((member, depth + 1) for member in members)
    return None


def _fields_and_members(meta: Any) -> tuple[dict[str, Any], list[Any]]:
    """A vineyard ObjectMeta's (or a layout's ``LayoutMeta``'s) fields and members."""
    if hasattr(meta, "fields") and hasattr(meta, "members"):
        return dict(meta.fields), list(meta.members.values())
    if not hasattr(meta, "items"):
        return {}, []
    fields, members = {}, []
    for key, value in meta.items():
        if hasattr(value, "typename"):
            members.append(value)
        else:
            fields[key] = value
    return fields, members


def decode_foreign(client: Any, meta: Any, *, allow_pickle: bool) -> Any:
    """The value of an object plain vineyard wrote, by vineyard's resolvers."""
    if not allow_pickle:
        found = _code_in(meta)
        if found is not None:
            raise UnsupportedType(
                f"object {meta.id} ({meta.typename}) holds {found}, which vineyard decodes with pickle "
                "or code of its own; reading it could run code from the store, so pass "
                "allow_pickle=True if you trust its writer")
    try:
        return client.get(meta.id)
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:  # vineyard's resolvers
        raise ObjectsError(f"object {meta.id} ({meta.typename}) could not be decoded: {exc}") from exc


__all__ = ["DATA_ONLY", "decode_foreign"]
