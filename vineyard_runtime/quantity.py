"""Memory quantities as Kubernetes writes them (``2Gi``, ``512Mi``, ``1G``)."""

from __future__ import annotations

import re
from fractions import Fraction

from vineyard_runtime.errors import InvalidSpec

_UNITS: dict[str, int] = {
    "": 1,
    "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?\s*$")
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
        match = _PATTERN.match(str(value))
        if not match:
            raise InvalidSpec(
                f"{what} {value!r} is not a size; write it like 1Gi, 512Mi, 2G or 1073741824"
            )
        count = int(Fraction(match.group(1)) * _UNITS[match.group(2) or ""])
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
