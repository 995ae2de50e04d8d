"""The tests' wait: poll for the state a test asserts, never sleep for a clock."""

from __future__ import annotations

import time
from typing import Any


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1, message: str = "") -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail with ``message`` otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last one
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting: {message} (last error: {last_error!r})")


__all__ = ["wait_for"]
