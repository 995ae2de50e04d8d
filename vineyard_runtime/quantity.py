"""Memory quantities as Kubernetes writes them (``2Gi``, ``512Mi``, ``1G``, ``1e9``), and
the spellings people type (``1GB``, ``512 MiB``).

Kubernetes' own grammar (``resource.Quantity``), parsed here rather than with the
kubernetes client's ``parse_quantity``: that import costs about 0.3 s on every command of
the local cluster, which never otherwise touches Kubernetes. ``tests/test_quantity.py``
checks both agree on generated quantities. Custom resources keep to that grammar
(``kubernetes=True``, the pattern their CRDs carry); sizes given to the local cluster
also take a ``B`` after the unit, in any case, and a space before it."""

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
#: ``1GB``, ``1 gb``, ``512MB``, ``1kB``, ``100B`` (powers of 1000); ``1GiB``, ``512 MiB`` (of 1024)
_SPELLED = re.compile(rf"^(?P<number>{_NUMBER})\s*(?:(?P<unit>[kmgtpe])(?P<binary>i?))?b$", re.IGNORECASE)
#: Kubernetes' units with a space before them: ``1 Gi``, ``512 M``
_SPACED = re.compile(rf"^(?P<number>{_NUMBER})\s+(?P<unit>[KMGTPE]i|[numkMGTPE])$")
#: What the error of a size says is accepted.
ACCEPTED_SIZES = ("a number and a unit: KiB, MiB, GiB, TiB (powers of 1024; or Ki, Mi, Gi, Ti) or kB, MB, "
                  "GB, TB (powers of 1000; or k, M, G, T), e.g. 1Gi, 512MB or 2 GB; a plain number counts bytes")


def common_spelling(text: str) -> str | None:
    """``text`` in Kubernetes' grammar when it is a size as people write it (``1GB`` ->
    ``1G``, ``512 MiB`` -> ``512Mi``, ``100B`` -> ``100``); None otherwise."""
    text = text.strip()
    spaced = _SPACED.match(text)
    if spaced:
        return spaced.group("number") + spaced.group("unit")
    spelled = _SPELLED.match(text)
    if not spelled:
        return None
    unit, binary = (spelled.group("unit") or ""), spelled.group("binary")
    if binary:
        return spelled.group("number") + unit.upper() + "i"
    return spelled.group("number") + ("k" if unit.lower() == "k" else unit.upper())


def parse_quantity(value: str | int, *, what: str = "size", minimum: int = 1, kubernetes: bool = False) -> int:
    """Return the number of bytes in ``value`` (``"1Gi"``, ``"500M"``, ``1024``; unless
    ``kubernetes``, also ``"1GB"``, ``"512 MiB"``: see ``common_spelling``).

    Raises :class:`InvalidSpec` naming ``what`` for anything else, for zero or
    negative sizes, and for sizes below ``minimum`` bytes.
    """
    if isinstance(value, bool):
        raise InvalidSpec(f"{what} {value!r} is not a size; write it like 1Gi, 512Mi or 1073741824")
    if isinstance(value, int):
        count = value
    else:
        text = str(value).strip()
        spelled = common_spelling(text)
        if spelled is not None and kubernetes:
            raise InvalidSpec(f"{what} {value!r} is not a Kubernetes quantity; write {spelled}"
                              + (f" ({_meaning(spelled)})" if _meaning(spelled) else ""))
        match = _PATTERN.match(spelled or text)
        if not match:
            hint = " (K is not a unit: k is 1000, Ki is 1024)" if text.endswith("K") else ""
            accepted = "write it like 1Gi, 512Mi, 2G, 1e9 or 1073741824" if kubernetes else f"write {ACCEPTED_SIZES}"
            raise InvalidSpec(f"{what} {value!r} is not a size{hint}; {accepted}")
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


def _meaning(quantity: str) -> str:
    """``10^9 bytes`` for ``1G``, ``2^30 bytes`` for ``1Gi``; empty for other quantities."""
    powers = {"k": "10^3", "M": "10^6", "G": "10^9", "T": "10^12", "P": "10^15", "E": "10^18",
              "Ki": "2^10", "Mi": "2^20", "Gi": "2^30", "Ti": "2^40", "Pi": "2^50", "Ei": "2^60"}
    suffix = quantity.lstrip("+-.0123456789")
    return f"{quantity[:len(quantity) - len(suffix)]} x {powers[suffix]} bytes" if suffix in powers else ""


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
