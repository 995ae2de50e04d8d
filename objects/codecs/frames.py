"""pandas DataFrame and Series, routed through Arrow.

Vineyard's own pandas support stores pandas 3's default ``str`` columns wrongly;
Arrow keeps every dtype (nullable, categorical, time zones, ``str`` and object
strings) and the index (named, DatetimeIndex, MultiIndex). Numeric columns without
nulls come back as views of shared memory.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

from objects.codecs.arrow import read_table, write_table
from objects.codecs.base import Context
from objects.errors import UnsupportedType

KIND = "Pandas"
_SERIES_COLUMN = "__fluidv_series__"


def _object_columns(frame: pd.DataFrame) -> list[int]:
    return [i for i, dtype in enumerate(frame.dtypes) if dtype == object]


def encode(ctx: Context, value: pd.DataFrame | pd.Series) -> Any:
    is_series = isinstance(value, pd.Series)
    frame = value.to_frame(name=_SERIES_COLUMN) if is_series else value
    if not frame.columns.is_unique:
        raise UnsupportedType("a DataFrame with duplicate column names cannot be stored; rename them")
    try:
        table = pa.Table.from_pandas(frame, preserve_index=True)
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
