"""Memory quantities as Kubernetes writes them (``2Gi``, ``512Mi``, ``1G``, ``1e9``).

Kubernetes' own grammar (``resource.Quantity``), parsed here rather than with the
kubernetes client's ``parse_quantity``: that import costs about 0.3 s on every command of
the local cluster, which never otherwise touches Kubernetes. ``tests/test_quantity.py``
checks both agree on generated quantities."""

from __future__ import annotations

import re
from fractions import Fraction

from vineyard_runtime.errors import InvalidSpec

_UNITS: dict[str, Fraction] = {
    "": Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "P": Fraction(10**15), "E": Fraction(10**18),
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
    "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
#: Kubernetes' quantity pattern (the one its CRDs carry for int-or-string quantities).
QUANTITY_PATTERN = rf"^{_NUMBER}(?:[KMGTPE]i|[numkMGTPE]|[eE]{_NUMBER})?$"
_PATTERN = re.compile(rf"^(?P<number>{_NUMBER})(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE](?P<exponent>[+-]?[0-9]+))?$")
_BINARY = [("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)]


def parse_quantity(value: str | int, *, what: str = "size", minimum: int = 1) -> int:
    """Return the number of bytes in ``value`` (``"1Gi"``, ``"500M"``, ``1024``).

    Raises :class:`InvalidSpec` naming ``what`` for anything else, for zero or
    negative sizes, and for sizes below ``minimum`` bytes.
    """
    if isinstance(value, bool):
        raise InvalidSpec(f"{what} {value!r} is not a size; write it like 1Gi, 512Mi or 1073741824")
    if isinstance(value, int):
        count = value
    else:
        match = _PATTERN.match(str(value).strip())
        if not match:
            hint = " (K is not a unit: k is 1000, Ki is 1024)" if str(value).strip().endswith("K") else ""
            raise InvalidSpec(
                f"{what} {value!r} is not a size{hint}; write it like 1Gi, 512Mi, 2G, 1e9 or 1073741824"
            )
        suffix = match.group("suffix") or ""
        if match.group("exponent") is not None:
            scale = Fraction(10) ** int(match.group("exponent"))
        else:
            scale = _UNITS[suffix]
        exact = Fraction(match.group("number")) * scale
        count = -((-exact.numerator) // exact.denominator)  # whole bytes, rounded up as Kubernetes does
    if count <= 0:
        raise InvalidSpec(f"{what} {value!r} must be greater than zero")
    if count < minimum:
        raise InvalidSpec(f"{what} {value!r} is below the minimum of {format_bytes(minimum)}")
    return count


def format_bytes(count: int) -> str:
    """Write ``count`` bytes in the largest binary unit that divides it exactly."""
    for suffix, factor in _BINARY:
        if count >= factor and count % factor == 0:
            return f"{count // factor}{suffix}"
    return str(count)


def human_bytes(count: float) -> str:
    """Write ``count`` bytes for people (``1.5 GiB``)."""
    value = float(count)
    for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or suffix == "TiB":
            return f"{value:.0f} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
        value /= 1024
    raise AssertionError("unreachable")
