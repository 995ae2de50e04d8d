"""Conditions that change their transition time only when their status changes."""

from __future__ import annotations

from typing import Any

from fluid_core.models.base import Condition


def set_condition(
    current: list[dict[str, Any]], kind: str, status: bool, reason: str, message: str, now: str,
) -> list[dict[str, Any]]:
    """``current`` with condition ``kind`` set; the transition time moves only on a change."""
    value = "True" if status else "False"
    result = [dict(c) for c in current if c.get("type") != kind]
    previous = next((c for c in current if c.get("type") == kind), None)
    since = previous.get("lastTransitionTime") if previous and previous.get("status") == value else now
    result.append({
        "type": kind, "status": value, "reason": reason, "message": message,
        "lastTransitionTime": since or now,
    })
    return sorted(result, key=lambda c: c["type"])


def typed(conditions: list[dict[str, Any]]) -> list[Condition]:
    """Conditions as a typed status holds them."""
    return [Condition.model_validate(c) for c in conditions]
