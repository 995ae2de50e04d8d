"""A running step, whichever way it was started: ``poll()`` until it says how it ended,
``stop()`` to end it early.

Script processors are a command run by the runner (a ``Popen`` in a session of its
own); every other step is forked by the spawner's helper, known by its pid, and its
result comes back through the helper.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from vineyard_runtime.plumbing.processes import terminate


@dataclass(frozen=True)
class StepResult:
    ok: bool
    message: str
    #: what the step reported of itself (stats, written names, seconds); empty for scripts
    report: dict[str, Any] = field(default_factory=dict)


class StepProcess:
    """The handle of a running step."""

    def poll(self) -> StepResult | None:
        """How the step ended, or None while it runs."""
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> None:
        """End the step now: SIGTERM, then SIGKILL after ``timeout``."""
        raise NotImplementedError


class ScriptStep(StepProcess):
    """A script processor's command, in a session of its own (stopped as a group)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def poll(self) -> StepResult | None:
        code = self.process.poll()
        if code is None:
            return None
        return StepResult(code == 0, "done" if code == 0 else f"exited with code {code}")

    def stop(self, timeout: float = 5.0) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class Outcomes(Protocol):
    """Where a forked step's ending arrives (the spawner)."""

    def outcome(self, pid: int) -> dict[str, Any] | None: ...

    def wait(self, timeout: float) -> None: ...


class ForkedStep(StepProcess):
    """A step forked by the spawner's helper: its pid, and the spawner that relays how it ended."""

    def __init__(self, pid: int, outcomes: Outcomes) -> None:
        self.pid, self._outcomes = pid, outcomes
        self._ended: StepResult | None = None

    def poll(self) -> StepResult | None:
        if self._ended is None:
            self._ended = self._read()
        return self._ended

    def _read(self) -> StepResult | None:
        ended = self._outcomes.outcome(self.pid)
        if ended is None:
            return None
        report: dict[str, Any] | None = ended.get("result")
        if report is None:
            return StepResult(False, f"the step process {self.pid} died before it finished: {ended.get('died')}")
        ok = bool(report.get("ok"))
        return StepResult(ok, str(report.get("summary") if ok else report.get("error", "failed")), report)

    def wait(self, timeout: float) -> StepResult | None:
        """How the step ended, waiting up to ``timeout`` seconds (None if it still runs)."""
        deadline = time.monotonic() + timeout
        while (ended := self.poll()) is None and (left := deadline - time.monotonic()) > 0:
            self._outcomes.wait(left)
        return ended

    def stop(self, timeout: float = 5.0) -> None:
        terminate([self.pid], timeout=timeout)


__all__ = ["ForkedStep", "Outcomes", "ScriptStep", "StepProcess", "StepResult"]
