"""The one poll loop: first truthy result, None at the timeout, a raise stops it."""

from __future__ import annotations

import itertools

import pytest

from vineyard_runtime.plumbing.waiting import wait_until


def test_returns_the_first_truthy_result():
    answers = iter([0, None, "", "ready", "later"])
    assert wait_until(lambda: next(answers), 5, interval=0.001) == "ready"


def test_none_when_the_condition_never_holds_and_asks_once_more_at_the_end():
    asked = itertools.count()
    assert wait_until(lambda: next(asked) < 0, 0.05, interval=0.01) is None
    assert next(asked) >= 2  # asked before and after the wait, not only once
    assert wait_until(lambda: True, 0) is True  # a zero timeout still asks


def test_a_condition_that_raises_ends_the_wait():
    def exited() -> bool:
        raise RuntimeError("the daemon exited")

    with pytest.raises(RuntimeError, match="daemon exited"):
        wait_until(exited, 60)
