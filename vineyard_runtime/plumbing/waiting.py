"""Waiting for a condition: the one poll loop of the project.

``wait_until(ready, timeout)`` returns ``ready()``'s first truthy result, or None when
``timeout`` seconds pass without one; the caller says what a timeout means. A
condition may raise to stop the wait early (a daemon that exited, say).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, *, interval: float = 0.05) -> T | None:
    """``condition()``'s first truthy result, asked every ``interval`` seconds (and once
    more at the end) until ``timeout`` seconds have passed; None if it never came."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(interval, left))


__all__ = ["wait_until"]
