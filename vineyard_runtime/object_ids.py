"""How the project spells a vineyard object or blob id: ``o`` and 16 hex digits (as
vineyard prints them), the one spelling used in names, layouts, holds and requests."""

from __future__ import annotations

from typing import Any


def object_name(object_id: Any) -> str:
    """``o`` and the 16 hex digits of ``object_id`` (an int or vineyard's ObjectID)."""
    return f"o{int(object_id):016x}"


__all__ = ["object_name"]
