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
