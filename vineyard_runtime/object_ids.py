"""How the project spells a vineyard object or blob id: ``o`` and 16 hex digits (as
vineyard prints them), the one spelling used in names, layouts, holds and requests."""

from __future__ import annotations

from typing import Any


def object_name(object_id: Any) -> str:
    """``o`` and the 16 hex digits of ``object_id`` (an int or vineyard's ObjectID)."""
    return f"o{int(object_id):016x}"


def object_id(name: str) -> int:
    """The id ``object_name`` spelled as ``name``."""
    return int(name[1:], 16)


__all__ = ["object_id", "object_name"]
