"""Every supported type round-trips exactly, from the node that wrote it and from another:
small values through their inline directory entry, values past ``INLINE_MAX`` through
shared memory (and, on another node, a copy received into that node's memory)."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.extra import numpy as hnp

import objects
from support.reading import assert_same
from objects.layout import INLINE_MAX

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_same_array(got, expected):
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def both_ways(stores, value, **kwargs):
    """What node-0 reads back after putting ``value`` named, and what node-2 reads."""
    ref = stores["node-0"].put(value, f"types/{uuid.uuid4().hex}", **kwargs)
    return stores["node-0"].get(ref), stores["node-2"].get(ref)


DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "complex64", "complex128", "bool",
          "datetime64[ns]", "datetime64[D]", "timedelta64[us]", "S5", "U7"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_dtypes(stores, dtype):
    rng = np.random.default_rng(1)
    value = rng.integers(0, 100, size=(3, 5)).astype(dtype)
    for got in both_ways(stores, value):
        assert_same_array(got, value)


@given(hnp.arrays(dtype=hnp.scalar_dtypes(), shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0)))
@SETTINGS
def test_numpy_property_round_trip(stores, value):
    got = stores["node-1"].get(stores["node-1"].put(value))
    assert got.dtype == value.dtype and got.shape == value.shape
    np.testing.assert_array_equal(got, value)


def test_zero_d_empty_fortran_and_strided(stores):
    zero_d = np.array(3.5)
    empty = np.empty((0, 4), dtype=np.int32)
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    strided = np.arange(100.0)[::3]
    for value in (zero_d, empty, fortran, strided):
        for got in both_ways(stores, value):
            assert_same_array(got, value)
    assert stores["node-0"].get(stores["node-0"].put(fortran)).flags.f_contiguous


def test_structured_dtype(stores):
    value = np.array([(1, 2.5, b"ab"), (3, -1.0, b"c")],
                     dtype=[("id", "<i4"), ("score", "<f8"), ("tag", "S2")])
    for got in both_ways(stores, value):
        assert_same_array(got, value)


def test_numpy_scalar_comes_back_as_scalar(stores):
    got, _ = both_ways(stores, np.float32(1.5))
    assert isinstance(got, np.float32) and got == np.float32(1.5)


def test_object_arrays_need_pickle(stores):
    with pytest.raises(objects.UnsupportedType, match="dtype=object"):
        stores["node-0"].put(np.array([{"a": 1}], dtype=object))


def arrow_values():
    strings = pa.array(["a", None, "ccc"])
    return {
        "table": pa.table({"i": [1, None, 3], "s": strings, "f": [0.5, 1.5, None]}),
        "large_strings": pa.array(["x" * 10, None], type=pa.large_string()),
        "lists": pa.array([[1, 2], None, []], type=pa.list_(pa.int32())),
        "structs": pa.array([{"a": 1, "b": "x"}, None, {"a": None, "b": "y"}]),
        "dictionary": pa.array(["red", "blue", "red", None]).dictionary_encode(),
        "nulls": pa.nulls(4),
        "record_batch": pa.record_batch({"x": [1.0, 2.0], "y": ["p", "q"]}),
        "chunked": pa.chunked_array([[1, 2], [3], []], type=pa.int64()),
        "tensor": pa.FixedShapeTensorArray.from_numpy_ndarray(np.arange(24.0).reshape(4, 2, 3)),
        "timestamps": pa.array([dt.datetime(2024, 1, 1), None], type=pa.timestamp("us", tz="UTC")),
        "empty_table": pa.table({"a": pa.array([], type=pa.int8())}),
    }


@pytest.mark.parametrize("kind", list(arrow_values()))
def test_arrow_values(stores, kind):
    value = arrow_values()[kind]
    for got in both_ways(stores, value):
        assert type(got) is type(value), kind
        assert got.equals(value)


def test_tensors_inside_a_table(stores):
    tensors = pa.FixedShapeTensorArray.from_numpy_ndarray(np.arange(12.0).reshape(3, 2, 2))
    table = pa.table({"id": [1, 2, 3], "t": tensors})
    got = stores["node-2"].get(stores["node-0"].put(table, "types/tensor-table"))
    assert got.equals(table)
    np.testing.assert_array_equal(got.column("t").combine_chunks().to_numpy_ndarray(),
                                  np.arange(12.0).reshape(3, 2, 2))


def frames():
    index = pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)], names=["k", "n"])
    return {
        "numeric": pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1, 2, 3]}),
        "nullable": pd.DataFrame({"i": pd.array([1, None, 3], dtype="Int64"),
                                  "b": pd.array([True, None, False], dtype="boolean")}),
        "categorical": pd.DataFrame({"c": pd.Categorical(["x", "y", "x"], categories=["y", "x"])}),
        "tz": pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3, tz="Europe/Paris")}),
        "object_strings": pd.DataFrame({"s": np.array(["a", None, "c"], dtype=object)}),
        "str_dtype": pd.DataFrame({"s": pd.Series(["a", None, "c"], dtype="str")}),
        "default_strings": pd.DataFrame({"s": ["a", "b", "c"]}),
        "named_index": pd.DataFrame({"x": [1, 2, 3]}, index=pd.Index([10, 20, 30], name="id")),
        "datetime_index": pd.DataFrame({"x": [1, 2, 3]},
                                       index=pd.date_range("2024-01-01", periods=3, name="day")),
        "multi_index": pd.DataFrame({"x": [1.5, 2.5, 3.5]}, index=index),
        "empty": pd.DataFrame({"x": pd.Series([], dtype="float64")}),
    }


@pytest.mark.parametrize("kind", list(frames()))
def test_pandas_frames(stores, kind):
    value = frames()[kind]
    for got in both_ways(stores, value):
        pd.testing.assert_frame_equal(got, value, check_exact=True)


@pytest.mark.parametrize("name", ["values", None, 7])
def test_pandas_series(stores, name):
    value = pd.Series([1.5, None, 3.0], index=pd.Index(["a", "b", "c"], name="k"), name=name)
    for got in both_ways(stores, value):
        pd.testing.assert_series_equal(got, value, check_exact=True)
    text = pd.Series(["x", None], dtype="str", name=name)
    pd.testing.assert_series_equal(both_ways(stores, text)[1], text)


def test_nested_structures_keep_their_shape(stores):
    value = {
        "weights": [np.ones((2, 2)), np.zeros(3, dtype=np.int8)],
        "meta": ("run-1", 3, 2.5, None, True, float("nan"), b"\x00\x01"),
        "table": pa.table({"a": [1, 2]}),
        "frame": pd.DataFrame({"z": [1.0]}),
        7: {"deep": [[np.arange(2)]]},
    }
    for got in both_ways(stores, value):
        assert set(got) == {"weights", "meta", "table", "frame", 7}
        assert isinstance(got["weights"], list) and isinstance(got["meta"], tuple)
        assert_same_array(got["weights"][0], value["weights"][0])
        assert_same_array(got["weights"][1], value["weights"][1])
        assert got["meta"][:5] == value["meta"][:5] and np.isnan(got["meta"][5])
        assert got["meta"][6] == b"\x00\x01"
        assert got["table"].equals(value["table"])
        pd.testing.assert_frame_equal(got["frame"], value["frame"])
        assert_same_array(got[7]["deep"][0][0], np.arange(2))


def test_unsupported_values_name_their_type(stores):
    class Thing:
        pass

    with pytest.raises(objects.UnsupportedType, match=r"test_objects_types\..*Thing.*allow_pickle=True"):
        stores["node-0"].put({"x": Thing()})
    with pytest.raises(objects.UnsupportedType, match="dict keys"):
        stores["node-0"].put({(1, 2): np.ones(1)})


def test_pickle_only_when_allowed_on_both_sides(stores):
    value = {"s": {1, 2, 3}}
    ref = stores["node-0"].put(value, "types/pickled", allow_pickle=True)
    with pytest.raises(objects.UnsupportedType, match="pickled builtins.set"):
        stores["node-1"].get(ref)
    assert stores["node-1"].get(ref, allow_pickle=True) == value


class Point:
    def __init__(self, xy: np.ndarray, tags: pa.Array) -> None:
        self.xy, self.tags = xy, tags


def test_registered_custom_type(stores):
    objects.register(Point, lambda p: {"xy": p.xy, "tags": p.tags},
                     lambda parts: Point(parts["xy"], parts["tags"]), name="tests.Point")
    try:
        value = Point(np.arange(6000.0).reshape(3000, 2), pa.array(["a", "b", "c"] * 1000))
        for got, reader in zip(both_ways(stores, value), ("node-0", "node-2")):
            assert isinstance(got, Point)
            assert_same_array(got.xy, value.xy)
            assert got.tags.equals(value.tags)
            assert stores[reader].is_shared_memory(got.xy.ctypes.data)
    finally:
        objects.unregister(Point)


def large_values() -> dict[str, object]:
    """A value of each type family, each past the inline limit."""
    rows = 4 * INLINE_MAX // 8
    rng = np.random.default_rng(7)
    numbers = rng.random(rows)
    words = pa.array([f"w{i}" if i % 7 else None for i in range(rows)])
    table = pa.table({"x": numbers, "i": pa.array(range(rows), type=pa.int64()), "s": words})
    frame = pd.DataFrame({"x": numbers, "n": pd.array(range(rows), dtype="Int64"),
                          "c": pd.Categorical(["u", "v"] * (rows // 2)),
                          "t": pd.date_range("2024-01-01", periods=rows, freq="s", tz="UTC")})
    return {
        "numpy": numbers.reshape(-1, 64),
        "numpy_fortran": np.asfortranarray(rng.integers(0, 1 << 40, size=(rows // 64, 64))),
        "numpy_strings": np.array([f"s{i}" for i in range(rows)], dtype="U8"),
        "arrow_table": table,
        "arrow_array": words,
        "arrow_record_batch": table.to_batches()[0],
        "arrow_chunked": pa.chunked_array([numbers[: rows // 2], numbers[rows // 2:]]),
        "pandas_frame": frame,
        "pandas_series": pd.Series(numbers, name="x", index=pd.RangeIndex(rows, name="k")),
        "nested": {"weights": [numbers, numbers[::-1].copy()], "table": table, "meta": ("run", 1)},
    }


@pytest.mark.parametrize("kind", list(large_values()))
def test_large_values_of_every_family_go_through_shared_memory_and_to_another_node(stores, kind):
    value = large_values()[kind]
    ref = stores["node-0"].put(value, f"types/large-{kind}-{uuid.uuid4().hex}")
    assert stores["node-0"].directory.get(ref.name).blobs, f"{kind}: past INLINE_MAX ({INLINE_MAX} bytes) a value is not inline"
    assert ref.nbytes > INLINE_MAX
    for node in ("node-0", "node-2"):
        assert_same(value, stores[node].get(ref))
    if isinstance(value, np.ndarray):
        copy = stores["node-2"].get(ref)
        assert stores["node-2"].is_shared_memory(copy.ctypes.data), "received into node-2"


def test_torch_cpu_tensors(stores):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    for value in (torch.arange(12, dtype=torch.float32).reshape(3, 4),
                  torch.tensor([1, 2, 3], dtype=torch.int64),
                  torch.ones(2, 2, dtype=torch.bfloat16),
                  torch.tensor(5.0)):
        for got in both_ways(stores, value):
            assert isinstance(got, torch.Tensor) and got.dtype == value.dtype
            assert torch.equal(got, value)
    shared = stores["node-0"].get(stores["node-0"].put(torch.zeros(1000)))
    assert stores["node-0"].is_shared_memory(shared.data_ptr())
    large = torch.arange(4 * INLINE_MAX // 4, dtype=torch.float32).reshape(-1, 16)  # past the inline limit
    ref = stores["node-0"].put(large, f"types/large-torch-{uuid.uuid4().hex}")
    assert stores["node-0"].directory.get(ref.name).blobs
    for got in (stores["node-0"].get(ref), stores["node-2"].get(ref)):
        assert isinstance(got, torch.Tensor) and got.dtype == large.dtype and torch.equal(got, large)
    assert stores["node-2"].is_shared_memory(stores["node-2"].get(ref).data_ptr())
