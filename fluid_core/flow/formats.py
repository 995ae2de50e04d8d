"""Values as files and back: tables as Parquet or Arrow IPC, tensors as ``.npy``, nested
structures as directories. Works on any pyarrow filesystem (``file://`` and paths by default).

``write_value`` returns an entry (JSON) that says how ``read_value`` restores the exact type.
"""

from __future__ import annotations

import posixpath
import sys
from typing import Any

from fluid_core.errors import FluidError
from fluid_core.flow.rooted import OutsideRoot
from objects.codecs import dict_key, from_inline, inline

#: File extensions DataLoad understands, and the format each means.
EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".arrow": "arrow",
              ".feather": "feather", ".ipc": "arrow", ".npy": "npy"}
#: A file of any other type that a load names: cached as its bytes (a 1-d ``uint8``
#: array, its key keeping the extension), and exported as that file again.
RAW = "bytes"


def is_raw(value: Any, path: str) -> bool:
    """True when ``value`` at ``path`` is a file cached as its bytes: a 1-d ``uint8``
    array whose name ends in an extension that is none of ``EXTENSIONS``."""
    import numpy as np  # noqa: PLC0415

    ext = posixpath.splitext(posixpath.basename(path))[1].lower()
    return (bool(ext) and ext not in EXTENSIONS and isinstance(value, np.ndarray) and value.ndim == 1
            and value.dtype == np.uint8)


class FormatError(FluidError, ValueError):
    """A value that has no file form, or a file that is not what its name says."""


def filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path) of a URI or a local path."""
    from pyarrow import fs  # noqa: PLC0415

    if "://" not in uri:
        import os  # noqa: PLC0415

        return fs.LocalFileSystem(), os.path.abspath(uri)
    try:
        opened: tuple[Any, str] = fs.FileSystem.from_uri(uri)
        return opened
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds
        raise FormatError(f"cannot open {uri!r}: {exc}") from None


def write_value(value: Any, fs: Any, base: str, *, table_format: str = "parquet") -> dict[str, Any]:
    """Write ``value`` at ``base`` (+ extension) on ``fs``; the entry to read it back.
    Data frames and tables go to Parquet (``table_format="arrow"``: Arrow IPC files)."""
    import numpy as np  # noqa: PLC0415

    scalar = inline(value)
    if scalar is not None:
        return {"kind": "inline", "node": scalar}
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if is_raw(value, base):
        _parent(fs, base)
        with fs.open_output_stream(base) as out:
            out.write(value.tobytes())
        return {"kind": RAW, "file": base}
    if isinstance(value, np.ndarray):
        return _npy(value, fs, base, "npy")
    entry: dict[str, Any]
    pa = sys.modules.get("pyarrow")
    pd = sys.modules.get("pandas")
    torch = sys.modules.get("torch")
    if pd is not None and isinstance(value, (pd.DataFrame, pd.Series)):
        import pyarrow  # noqa: PLC0415

        series = isinstance(value, pd.Series)
        frame = value.to_frame(name="__series__" if value.name is None else value.name) if series else value
        table = pyarrow.Table.from_pandas(frame, preserve_index=True)
        entry = _table(table, fs, base, table_format)
        entry.update(kind="series" if series else "frame", name_is_none=series and value.name is None)
        return entry
    if pa is not None and isinstance(value, (pa.Table, pa.RecordBatch, pa.Array, pa.ChunkedArray)):
        from objects.codecs.arrow import as_table  # noqa: PLC0415

        table, shape = as_table(value)  # the shape to restore: table, record_batch, chunked_array, array
        entry = _table(table, fs, base, table_format if shape == "table" else "arrow")
        entry["kind"] = shape
        return entry
    if torch is not None and isinstance(value, torch.Tensor):
        if value.dtype == torch.bfloat16:
            entry = _npy(value.detach().cpu().view(torch.int16).numpy(), fs, base, "torch")
        else:
            entry = _npy(value.detach().cpu().numpy(), fs, base, "torch")
        entry["dtype"] = str(value.dtype).removeprefix("torch.")
        return entry
    if isinstance(value, (dict, list, tuple)):
        fs.create_dir(base, recursive=True)
        items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        children = [write_value(v, fs, posixpath.join(base, f"{i:05d}"), table_format=table_format)
                    for i, (_, v) in enumerate(items)]
        entry = {"kind": "dict" if isinstance(value, dict) else
                 "tuple" if isinstance(value, tuple) else "list", "dir": base, "items": children}
        if isinstance(value, dict):
            entry["keys"] = [dict_key(k) for k in value]
        return entry
    raise FormatError(f"a {type(value).__name__} has no file form; use numpy, Arrow, pandas, torch, "
                      "or dict/list/tuple of them")


def _npy(array: Any, fs: Any, base: str, kind: str) -> dict[str, Any]:
    import numpy as np  # noqa: PLC0415

    if array.dtype.hasobject:
        raise FormatError("numpy arrays of Python objects have no file form")
    path = base + ".npy"
    _parent(fs, path)
    with fs.open_output_stream(path) as out:
        np.save(out, array, allow_pickle=False)
    return {"kind": kind, "file": path}


def _table(table: Any, fs: Any, base: str, table_format: str) -> dict[str, Any]:
    import pyarrow as pa  # noqa: PLC0415

    path = base + (".parquet" if table_format == "parquet" else ".arrow")
    _parent(fs, path)
    with fs.open_output_stream(path) as out:
        if table_format == "parquet":
            import pyarrow.parquet as pq  # noqa: PLC0415

            pq.write_table(table, out)
        else:
            with pa.ipc.new_file(out, table.schema) as writer:
                writer.write_table(table)
    return {"file": path}


def _parent(fs: Any, path: str) -> None:
    parent = posixpath.dirname(path)
    if parent:
        fs.create_dir(parent, recursive=True)


def read_value(entry: dict[str, Any], fs: Any) -> Any:
    """The value ``write_value`` wrote, of the same type."""
    kind = entry["kind"]
    if kind == "inline":
        return from_inline(entry["node"])
    if kind in ("dict", "list", "tuple"):
        items = [read_value(child, fs) for child in entry["items"]]
        if kind == "dict":
            return {k[1]: v for k, v in zip(entry["keys"], items)}
        return tuple(items) if kind == "tuple" else items
    if kind == RAW:
        return read_file(entry["file"], fs, RAW)
    if kind in ("npy", "torch"):
        array = read_file(entry["file"], fs, "npy")
        if kind == "npy":
            return array
        import torch  # noqa: PLC0415

        tensor = torch.from_numpy(array.copy())
        return tensor.view(torch.bfloat16) if entry.get("dtype") == "bfloat16" else tensor
    table = read_file(entry["file"], fs, "parquet" if entry["file"].endswith(".parquet") else "arrow")
    if kind == "table":
        return table
    if kind == "record_batch":
        batches = table.combine_chunks().to_batches()
        return batches[0] if batches else _empty_batch(table)
    if kind == "chunked_array":
        return table.column(0)
    if kind == "array":
        return table.column(0).combine_chunks()
    frame = table.to_pandas()
    if kind == "series":
        series = frame.iloc[:, 0]
        return series.rename(None) if entry.get("name_is_none") else series
    return frame


def _empty_batch(table: Any) -> Any:
    import pyarrow as pa  # noqa: PLC0415

    return pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in table.schema], schema=table.schema)


def read_file(path: str, fs: Any, fmt: str) -> Any:
    """A file as a value: ``npy`` -> ndarray, tables -> ``pyarrow.Table``, ``bytes`` ->
    its bytes as a 1-d ``uint8`` array."""
    import numpy as np  # noqa: PLC0415
    import pyarrow as pa  # noqa: PLC0415

    try:
        with fs.open_input_file(path) as handle:
            if fmt == RAW:
                return np.frombuffer(handle.read(), dtype=np.uint8)
            if fmt == "npy":
                return np.load(handle, allow_pickle=False)
            if fmt == "parquet":
                import pyarrow.parquet as pq  # noqa: PLC0415

                return pq.read_table(handle)
            if fmt == "csv":
                import pyarrow.csv as csv  # noqa: PLC0415

                return csv.read_csv(handle)
            if fmt in ("arrow", "feather"):
                try:
                    return pa.ipc.open_file(handle).read_all()
                except pa.ArrowInvalid:
                    handle.seek(0)
                    return pa.ipc.open_stream(handle).read_all()
    except OutsideRoot:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise FormatError(f"cannot read {path} as {fmt}: {exc}") from None
    raise FormatError(f"unknown format {fmt!r}; use one of {sorted(set(EXTENSIONS.values()))}")
