"""pandas DataFrame and Series, routed through Arrow.

Vineyard's own pandas support stores pandas 3's default ``str`` columns wrongly;
Arrow keeps every dtype (nullable, categorical, time zones, ``str`` and object
strings) and the index (named, DatetimeIndex, MultiIndex). Numeric columns without
nulls come back as views of shared memory.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from objects.codecs.arrow import read_table, write_table
from objects.codecs.base import Context
from objects.errors import UnsupportedType

KIND = "Pandas"
_SERIES_COLUMN = "__fluidv_series__"


def _object_columns(frame: pd.DataFrame) -> list[int]:
    return [i for i, dtype in enumerate(frame.dtypes) if dtype == np.dtype(object)]


def _columns_as_table(frame: pd.DataFrame) -> pa.Table | None:
    """The frame as a table whose columns alias the frame's own arrays, or None when it
    has more than numeric and categorical columns under a RangeIndex.

    ``Table.from_pandas`` copies every column once more before the table is written into
    shared memory (about 50 ms for 256 MiB); numeric numpy arrays convert without a copy.
    The schema (with pandas' metadata for reading back) comes from an empty slice, and
    the RangeIndex stays metadata (its stop fixed to the frame's length), not a column.
    """
    index = frame.index
    if not isinstance(index, pd.RangeIndex):
        return None
    kinds = [isinstance(d, pd.CategoricalDtype) or (isinstance(d, np.dtype) and d.kind in "biuf")
             for d in frame.dtypes]
    if not all(kinds):
        return None
    schema = pa.Schema.from_pandas(frame.iloc[:0], preserve_index=None)
    pandas_meta = schema.pandas_metadata
    ranges = pandas_meta.get("index_columns") if pandas_meta else None
    if len(schema) != frame.shape[1] or not ranges or ranges[0].get("kind") != "range":
        return None
    ranges[0]["stop"] = index.stop
    schema = schema.with_metadata({**schema.metadata, b"pandas": json.dumps(pandas_meta).encode()})
    arrays = []
    for position, field in enumerate(schema):
        column = frame.iloc[:, position]
        categorical = isinstance(column.dtype, pd.CategoricalDtype)
        array = pa.array(column.array) if categorical else pa.array(column.to_numpy())
        if array.type != field.type:
            return None
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=schema)


def encode(ctx: Context, value: pd.DataFrame | pd.Series) -> Any:
    is_series = isinstance(value, pd.Series)
    frame = value.to_frame(name=_SERIES_COLUMN) if is_series else value
    if not frame.columns.is_unique:
        raise UnsupportedType("a DataFrame with duplicate column names cannot be stored; rename them")
    try:
        table = _columns_as_table(frame) or pa.Table.from_pandas(frame, preserve_index=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise UnsupportedType(
            f"this pandas {type(value).__name__} has no Arrow layout ({exc}); convert the "
            "offending column or pass allow_pickle=True"
        ) from None
    head = {
        "series": is_series,
        "series_name": value.name if is_series else None,
        "object_columns": _object_columns(frame),
        "index_freq": getattr(frame.index, "freqstr", None),
    }
    return write_table(ctx, table, KIND, head)


def decode(meta: Any, head: dict[str, Any]) -> pd.DataFrame | pd.Series:
    frame = read_table(meta).to_pandas(split_blocks=True, self_destruct=False)
    for position in head.get("object_columns", []):
        column = frame.columns[position]
        if frame[column].dtype != object:
            frame[column] = frame[column].astype(object)
    if head.get("index_freq"):
        frame.index = pd.DatetimeIndex(frame.index, freq=head["index_freq"])
    if head["series"]:
        series = frame[_SERIES_COLUMN]
        series.name = head["series_name"]
        return series
    return frame
