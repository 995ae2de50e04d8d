"""A supervised daemon: its process, and when it may start again after it died."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from vineyard_runtime.plumbing.restarts import Backoff


@dataclass
class Daemon:
    """One process the supervisor keeps alive (``proc`` is None while it is down)."""

    proc: subprocess.Popen[bytes] | None = None
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def up(self) -> bool:
        return self.proc is not None

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        """``proc`` was just started for this daemon."""
        self.proc = proc
        self.backoff.started_now()

    def exited(self) -> int | None:
        """The exit code once the process has ended (None while it runs or is down)."""
        return None if self.proc is None else self.proc.poll()

    def reap(self) -> tuple[int, float] | None:
        """If the process has ended: mark the daemon down and schedule its restart;
        the exit code and the delay before the restart."""
        code = self.exited()
        if code is None:
            return None
        self.proc = None
        return code, self.backoff.schedule()

    def restart_due(self) -> bool:
        """Down, and its backoff has passed."""
        return self.proc is None and self.backoff.due()

    def failed(self) -> float:
        """A start did not succeed: stop what it left running; the delay before the next."""
        self.kill()
        return self.backoff.schedule()

    def end(self) -> None:
        """SIGKILL the process (also a stopped one) and wait for it; ``reap`` then sees it
        ended, as any other death."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the process (also a stopped one) and mark the daemon down."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM, SIGKILL after ``timeout``; the daemon is down afterwards. True when
        it had to be killed."""
        return bool(stop_all([self], timeout))


def stop_all(daemons: Sequence[Daemon], timeout: float = 10.0) -> list[int]:
    """SIGTERM every daemon at once, then SIGKILL what still runs after ``timeout``;
    the pids that had to be killed."""
    procs = [d.proc for d in daemons if d.proc is not None]
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    killed = []
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            killed.append(proc.pid)
    for daemon in daemons:
        daemon.proc = None
    return killed


__all__ = ["Daemon", "stop_all"]
