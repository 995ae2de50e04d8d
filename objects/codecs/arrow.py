"""Arrow data (Table, RecordBatch, ChunkedArray, Array) as one Arrow IPC stream in a blob.

Reading maps the IPC stream in place, so every Arrow buffer aliases shared memory:
strings, lists, structs, dictionaries, nulls and extension types such as
``FixedShapeTensorArray`` all come back without a copy.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from objects.codecs.base import Context, blob_view, blob_writer

KIND = "Arrow"
_COLUMN = "data"


def as_table(value: Any) -> tuple[pa.Table, str]:
    """The value as a table, and the shape to restore on read."""
    if isinstance(value, pa.Table):
        return value, "table"
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value]), "record_batch"
    if isinstance(value, pa.ChunkedArray):
        return pa.Table.from_arrays([value], names=[_COLUMN]), "chunked_array"
    if isinstance(value, pa.Array):
        return pa.Table.from_arrays([value], names=[_COLUMN]), "array"
    raise TypeError(f"not an Arrow value: {type(value)!r}")


def write_table(ctx: Context, table: pa.Table, kind: str, head: dict[str, Any]) -> Any:
    """Write ``table`` as an IPC stream into a new blob; return the created metadata."""
    sink = pa.MockOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    size = sink.size()
    builder = ctx.new_blob(size)
    try:
        with pa.ipc.new_stream(blob_writer(builder), table.schema) as writer:
            writer.write_table(table)
    except BaseException:
        ctx.abort(builder)
        raise
    blob = ctx.seal(builder)
    meta = ctx.new_meta(kind, head, table.nbytes)
    meta.add_member("buffer", blob)
    return ctx.create(meta)


def read_table(meta: Any) -> pa.Table:
    """The table in ``meta``'s blob, its buffers aliasing shared memory."""
    return pa.ipc.open_stream(pa.py_buffer(blob_view(meta.member("buffer")))).read_all()


def encode(ctx: Context, value: Any) -> Any:
    table, shape = as_table(value)
    return write_table(ctx, table, KIND, {"shape": shape})


def decode(meta: Any, head: dict[str, Any]) -> Any:
    table = read_table(meta)
    shape = head["shape"]
    if shape == "table":
        return table
    if shape == "record_batch":
        batches = table.to_batches()
        return batches[0] if len(batches) == 1 else table.combine_chunks().to_batches()[0]
    column = table.column(0)
    if shape == "chunked_array":
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
