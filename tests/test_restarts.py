"""The restart backoff shared by the local supervisor, the FUSE mount and the bridge."""

from __future__ import annotations

import time

from vineyard_runtime.restarts import Backoff


def test_delays_double_up_to_the_maximum_and_reset_once_stable():
    backoff = Backoff(maximum=4.0, stable_after=30.0)
    backoff.started_now()
    assert [backoff.schedule() for _ in range(6)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert not backoff.due()  # 4 s from now
    backoff.started = time.monotonic() - 31  # it then ran for longer than stable_after
    assert backoff.schedule() == 0.0 and backoff.due()


def test_may_restart_schedules_once_per_death():
    backoff = Backoff()
    backoff.started_now()
    assert backoff.may_restart()  # the first death: at once
    backoff.started_now()
    assert not backoff.may_restart()  # died again at once: 0.5 s to wait
    waiting_until = backoff.next_attempt
    assert not backoff.may_restart() and backoff.next_attempt == waiting_until  # asking again adds nothing
    backoff.next_attempt = time.monotonic()  # the delay has passed
    assert backoff.may_restart()
