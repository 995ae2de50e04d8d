import pytest
from hypothesis import given
from hypothesis import strategies as st

from vineyard_runtime import InvalidSpec, format_bytes, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1Gi", 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("2k", 2000), ("1024", 1024),
     ("1.5Gi", 3 * 2**29), (" 3Ki ", 3072), (4096, 4096)],
)
def test_parses_kubernetes_quantities(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["1Gx", "", "Gi", "-1Gi", "1 G i", "one", "1e9", True])
def test_rejects_malformed_sizes_with_a_hint(text):
    with pytest.raises(InvalidSpec, match="not a size|greater than zero"):
        parse_quantity(text, what="--size")


@pytest.mark.parametrize("text", ["0", "0Gi", 0, -5])
def test_rejects_zero_and_negative(text):
    with pytest.raises(InvalidSpec, match="greater than zero|not a size"):
        parse_quantity(text)


def test_minimum_is_enforced():
    with pytest.raises(InvalidSpec, match="below the minimum of 16Mi"):
        parse_quantity("1Mi", minimum=16 * 2**20)


@given(st.integers(min_value=1, max_value=2**62))
def test_format_round_trips(count):
    assert parse_quantity(format_bytes(count)) == count


def test_format_uses_largest_exact_unit():
    assert format_bytes(2**30) == "1Gi"
    assert format_bytes(1536 * 2**20) == "1536Mi"
    assert format_bytes(1000) == "1000"
