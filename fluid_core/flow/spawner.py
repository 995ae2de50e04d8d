"""A fork helper with numpy, pyarrow, pandas and vineyard already imported.

Steps start in milliseconds (a fork, not a new interpreter) and never re-run the
caller's script, as multiprocessing's spawn and forkserver modes would. The helper
dies with its owner and each step dies with the helper.

Each step reports how it ended over a pipe of its own; the helper relays every report
(or, when a step dies without one, how it died) on its stdout, one JSON line each, and
``Spawner`` hands them to the step's handle. Nothing is polled from files.

``python -m fluid_core.flow.spawner`` is the helper; ``Spawner`` drives it.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Any

from fluid_core.errors import FluidError
from fluid_core.flow.steps import ForkedStep
from vineyard_runtime.plumbing.processes import parent_death_signal, spawn

RUN_STEP = "fluid_core.flow.worker:run_step"
PRELOAD = ("numpy", "pyarrow", "pyarrow.parquet", "pandas", "objects",
           "fluid_core.flow.ops", "fluid_core.flow.worker", "fluid_core.models")
#: how long a fork may take to be answered before the helper counts as hung
FORK_ANSWER_SECONDS = 30.0


class SpawnerError(FluidError):
    """The fork helper did not start or stopped answering."""


class Spawner:
    """Starts step processes through the helper; ``spawn`` returns the step's handle."""

    def __init__(self, log_path: str) -> None:
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ended: dict[int, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self._news = False
        self._gone = False

    def start(self) -> "Spawner":
        # steps import what their caller can import (as multiprocessing's spawn does)
        path = os.pathsep.join(p for p in [os.getcwd(), *sys.path] if p and os.path.isdir(p))
        self._proc = spawn([sys.executable, "-m", "fluid_core.flow.spawner"], log_path=self._log_path,
                           stdout=subprocess.PIPE, stdin=subprocess.PIPE, env={"PYTHONPATH": path})
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != b"ready":
            self.close()
            raise SpawnerError(f"the step helper did not start; see {self._log_path}")
        threading.Thread(target=self._read, args=(self._proc.stdout,), name="fluidv-spawner",
                         daemon=True).start()
        return self

    def _read(self, stdout: Any) -> None:
        """Sort the helper's lines: answers to forks, and the steps' endings."""
        for line in stdout:
            message = json.loads(line)
            if "ended" in message:
                with self._changed:
                    self._ended[int(message["ended"])] = message
                    self._news = True
                    self._changed.notify_all()
            else:
                self._answers.put(message)
        with self._changed:  # the helper is gone, and its steps with it
            self._gone, self._news = True, True
            self._changed.notify_all()
        self._answers.put({"error": "the step helper stopped"})

    def spawn(self, request: dict[str, Any], log_path: str, target: str = RUN_STEP) -> ForkedStep:
        """Fork a step running ``target(request, report, log_path)`` (a ``module:function``,
        by default the operation runner; ``report`` takes the step's result, once)."""
        if self._proc is None or self._proc.poll() is not None or self._gone:
            raise SpawnerError(f"the step helper is not running; see {self._log_path}")
        assert self._proc.stdin is not None
        job = {"target": target, "request": request, "log": log_path}
        self._proc.stdin.write((json.dumps(job) + "\n").encode())
        self._proc.stdin.flush()
        try:
            answer = self._answers.get(timeout=FORK_ANSWER_SECONDS)
        except queue.Empty:
            raise SpawnerError(f"the step helper did not answer a fork in {FORK_ANSWER_SECONDS:g}s; "
                               f"see {self._log_path}") from None
        if "forked" not in answer:
            raise SpawnerError(f"the step helper failed to fork ({answer.get('error')}); see {self._log_path}")
        return ForkedStep(int(answer["forked"]), self)

    def outcome(self, pid: int) -> dict[str, Any] | None:
        """How step ``pid`` ended (``result``, or ``died`` saying how), None while it runs."""
        with self._changed:
            ended = self._ended.pop(pid, None)
            if ended is None and self._gone:
                return {"ended": pid, "died": "the step helper stopped"}
            return ended

    def wait(self, timeout: float) -> None:
        """Return when a step ends (or has ended since the last call), or after ``timeout``."""
        with self._changed:
            if not self._news:
                self._changed.wait(timeout)
            self._news = False

    def close(self) -> None:
        """Stop the helper (steps still running are stopped by their owner first)."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> "Spawner":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the helper process ------------------------------------------------------------------


def _say(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _how_it_died(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)} without a result"


def _run_child(job: dict[str, Any], report_fd: int, inherited: list[int]) -> None:  # pragma: no cover
    """In the forked step: detach, then run the job's target."""
    import importlib  # noqa: PLC0415

    try:
        os.setsid()
        parent_death_signal()()
        for fd in inherited:  # the helper's other pipes are none of this step's business
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)  # the helper's stdout carries the protocol

        def report(result: dict[str, Any]) -> None:
            with os.fdopen(report_fd, "wb") as out:
                out.write((json.dumps(result) + "\n").encode())

        module, _, function = job["target"].partition(":")
        getattr(importlib.import_module(module), function)(job["request"], report, job["log"])
    finally:
        os._exit(0)


def main() -> None:  # pragma: no cover - runs in the helper process
    import importlib  # noqa: PLC0415
    import selectors  # noqa: PLC0415

    for module in PRELOAD:
        importlib.import_module(module)
    print("ready", flush=True)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, None)
    reports: dict[int, tuple[int, bytearray]] = {}  # read end -> (pid, what came so far)
    reaped: dict[int, int] = {}  # pid -> wait status, of steps reaped before their pipe closed
    jobs = bytearray()
    while True:
        for key, _ in selector.select(timeout=1.0):
            fd = int(key.fd)
            chunk = os.read(fd, 1 << 16)
            if key.data is None:  # a job from the owner
                if not chunk:
                    return  # the owner let go; each step dies with this process
                jobs += chunk
                while b"\n" in jobs:
                    line, _, rest = bytes(jobs).partition(b"\n")
                    jobs = bytearray(rest)
                    read_end, write_end = os.pipe()
                    try:
                        pid = os.fork()
                    except OSError as exc:
                        os.close(read_end)
                        os.close(write_end)
                        _say({"error": str(exc)})
                        continue
                    if pid == 0:
                        _run_child(json.loads(line), write_end, [read_end, *reports, selector.fileno()])
                    os.close(write_end)
                    reports[read_end] = (pid, bytearray())
                    selector.register(read_end, selectors.EVENT_READ, pid)
                    _say({"forked": pid})
                continue
            pid, got = reports[fd]
            got += chunk
            if chunk and b"\n" not in got:
                continue
            selector.unregister(fd)
            os.close(fd)
            del reports[fd]
            if b"\n" in got:
                _say({"ended": pid, "result": json.loads(bytes(got).partition(b"\n")[0])})
            else:  # the pipe closed without a report: the step is gone
                status = reaped.pop(pid) if pid in reaped else os.waitpid(pid, 0)[1]
                _say({"ended": pid, "died": _how_it_died(status)})
        while True:  # reap the steps that reported and exited
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if any(pid == owner for owner, _ in reports.values()):
                reaped[pid] = status


if __name__ == "__main__":
    main()
