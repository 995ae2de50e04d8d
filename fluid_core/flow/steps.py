"""A running step, whichever way it was started: ``poll()`` until it says how it ended,
``stop()`` to end it early.

Script processors are a command run by the runner (a ``Popen`` in a session of its
own); every other step is forked by the spawner's helper, known by its pid, and leaves
its result as JSON beside its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any

from vineyard_runtime.processes import is_alive, terminate


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


class ForkedStep(StepProcess):
    """A step forked by the spawner's helper: a pid, and the result file it writes last."""

    def __init__(self, pid: int, result_path: str) -> None:
        self.pid, self.result_path = pid, result_path

    def poll(self) -> StepResult | None:
        if not os.path.exists(self.result_path) and is_alive(self.pid):
            return None
        try:
            with open(self.result_path) as handle:
                report: dict[str, Any] = json.load(handle)
        except (OSError, ValueError):
            return StepResult(False, f"the step process {self.pid} died before it finished")
        ok = bool(report.get("ok"))
        return StepResult(ok, str(report.get("summary") if ok else report.get("error", "failed")), report)

    def stop(self, timeout: float = 5.0) -> None:
        terminate([self.pid], timeout=timeout)


__all__ = ["ForkedStep", "ScriptStep", "StepProcess", "StepResult"]
