"""The tests' wait: poll for the state a test asserts, never sleep for a clock. Built, as
every wait of the tests and the project, on the one poll loop
(``vineyard_runtime.plumbing.waiting.wait_until``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vineyard_runtime.plumbing.waiting import wait_until


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1,
             message: str | Callable[[], str] = "") -> Any:
    """Poll ``predicate`` until it returns a truthy value (an exception it raises counts
    as not yet); AssertionError with ``message`` (made at the timeout when a function)
    and the last exception otherwise."""
    last_error: list[Exception | None] = [None]

    def asked() -> Any:
        try:
            return predicate()
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last one
            last_error[0] = exc
            return None

    found = wait_until(asked, timeout, interval=interval)
    if found:
        return found
    said = message() if callable(message) else message
    raise AssertionError(f"timed out after {timeout:g}s waiting: {said} (last error: {last_error[0]!r})")


__all__ = ["wait_for"]
