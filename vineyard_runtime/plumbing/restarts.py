"""When to start again a process that keeps dying: at once the first time, then after
0.5 s, 1 s, 2 s … up to ``maximum``; a process that ran ``stable_after`` seconds starts
the count afresh. The local supervisor, the FUSE mount's supervisor and the bridge's
worker all restart this way, so a daemon that cannot start does not spin a core."""

from __future__ import annotations

import time
from dataclasses import dataclass

MAX_BACKOFF = 10.0
STABLE_AFTER = 30.0


@dataclass
class Backoff:
    maximum: float = MAX_BACKOFF
    stable_after: float = STABLE_AFTER
    failures: int = 0
    started: float = 0.0
    next_attempt: float = 0.0
    #: a restart is scheduled for the current death (cleared by ``started_now``)
    pending: bool = False

    def started_now(self) -> None:
        """The process was just (re)started."""
        self.started = time.monotonic()
        self.pending = False

    def schedule(self) -> float:
        """The process died: the delay before the next start (also kept in ``next_attempt``)."""
        if time.monotonic() - self.started > self.stable_after:
            self.failures = 0
        delay = 0.0 if self.failures == 0 else min(self.maximum, 0.5 * 2 ** (self.failures - 1))
        self.failures += 1
        self.next_attempt = time.monotonic() + delay
        self.pending = True
        return delay

    def due(self) -> bool:
        """Whether the scheduled start may happen now."""
        return time.monotonic() >= self.next_attempt

    def may_restart(self) -> bool:
        """The process is down: whether to start it now. The first call after a death
        schedules the delay; later calls only wait it out."""
        if not self.pending:
            self.schedule()
        return self.due()


__all__ = ["MAX_BACKOFF", "STABLE_AFTER", "Backoff"]
