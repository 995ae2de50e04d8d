import pytest
from hypothesis import given
from hypothesis import strategies as st

from vineyard_runtime import InvalidSpec, format_bytes, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1Gi", 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("2k", 2000), ("1024", 1024),
     ("1.5Gi", 3 * 2**29), (" 3Ki ", 3072), (4096, 4096), ("1e3", 1000), ("2E6", 2 * 10**6),
     ("+4Ki", 4096), (".5Mi", 2**19), ("1500m", 2), ("1.0001k", 1001)],
)
def test_parses_kubernetes_quantities(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1GB", 10**9), ("1 GB", 10**9), ("1gb", 10**9), ("1Gb", 10**9), ("512MB", 512 * 10**6), ("4kB", 4000),
     ("4KB", 4000), ("1GiB", 2**30), ("1 GiB", 2**30), ("1gib", 2**30), ("512MiB", 512 * 2**20), ("2KiB", 2048),
     ("1.5 GiB", 3 * 2**29), ("100B", 100), ("100 b", 100), ("1 Gi", 2**30), ("512 M", 512 * 10**6),
     (" 2TB ", 2 * 10**12)],
)
def test_sizes_as_people_write_them(text, expected):
    """Sizes given to the local cluster: GB/MB/kB are powers of 1000, GiB/MiB/KiB of 1024."""
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(("text", "kubernetes"), [("1GB", "1G (1 x 10^9 bytes)"), ("512MiB", "512Mi (512 x 2^20 bytes)"),
                                                  ("1 Gi", "1Gi (1 x 2^30 bytes)"), ("100B", "100")])
def test_custom_resources_keep_kubernetes_grammar(text, kubernetes):
    """Kubernetes itself refuses these (the CRDs carry its pattern): each is told what to write."""
    import re

    from vineyard_runtime.quantity import QUANTITY_PATTERN

    assert not re.match(QUANTITY_PATTERN, text)
    with pytest.raises(InvalidSpec) as caught:
        parse_quantity(text, what="quota", kubernetes=True)
    assert str(caught.value) == f"quota {text!r} is not a Kubernetes quantity; write {kubernetes}"


def test_a_malformed_size_lists_what_is_accepted():
    with pytest.raises(InvalidSpec) as caught:
        parse_quantity("1XB", what="--size")
    assert str(caught.value) == (
        "--size '1XB' is not a size; write a number and a unit: KiB, MiB, GiB, TiB (powers of 1024; or Ki, Mi, Gi, "
        "Ti) or kB, MB, GB, TB (powers of 1000; or k, M, G, T), e.g. 1Gi, 512MB or 2 GB; a plain number counts bytes")


@pytest.mark.parametrize("text", ["1Gx", "", "Gi", "-1Gi", "1 G i", "one", "1e", "1e1.5", "1K", True, "1iB", "GB",
                                  "1 GB B", "1XB"])
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


def test_a_capital_k_is_told_apart():
    with pytest.raises(InvalidSpec, match="K is not a unit: k is 1000, Ki is 1024"):
        parse_quantity("4K")


_NUMBERS = st.one_of(st.integers(0, 10**6).map(str),
                     st.tuples(st.integers(0, 9999), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]}"),
                     st.integers(0, 999).map(lambda n: f".{n}"))
_SUFFIXES = st.sampled_from(["", "n", "u", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti", "e3", "E-2", "e+6"])


@given(number=_NUMBERS, suffix=_SUFFIXES, sign=st.sampled_from(["", "+"]))
def test_agrees_with_the_kubernetes_client(number, suffix, sign):
    """Every quantity of Kubernetes' grammar means the bytes its own client parses (rounded
    up to whole bytes, as Kubernetes does), and matches the pattern the CRDs carry."""
    import math
    import re

    from kubernetes.utils.quantity import parse_quantity as kubernetes_quantity

    from vineyard_runtime.quantity import QUANTITY_PATTERN

    text = f"{sign}{number}{suffix}"
    assert re.match(QUANTITY_PATTERN, text)
    expected = math.ceil(kubernetes_quantity(text))
    if expected <= 0:
        with pytest.raises(InvalidSpec, match="greater than zero"):
            parse_quantity(text)
    else:
        assert parse_quantity(text) == expected
