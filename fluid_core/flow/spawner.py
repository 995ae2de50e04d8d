"""A fork helper with numpy, pyarrow, pandas and vineyard already imported.

Steps start in milliseconds (a fork, not a new interpreter) and never re-run the
caller's script, as multiprocessing's spawn and forkserver modes would. The helper
dies with its owner and each step dies with the helper.

``python -m fluid_core.flow.spawner`` is the helper; ``Spawner`` drives it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

from fluid_core.errors import FluidError
from vineyard_runtime.processes import parent_death_signal, spawn

RUN_STEP = "fluid_core.flow.worker:run_step"
PRELOAD = ("numpy", "pyarrow", "pyarrow.parquet", "pandas", "vineyard", "objects",
           "fluid_core.flow.ops", "fluid_core.flow.worker", "fluid_core.models")


class SpawnerError(FluidError):
    """The fork helper did not start or stopped answering."""


class Spawner:
    """Starts step processes through the helper; ``spawn`` returns the step's pid."""

    def __init__(self, log_path: str) -> None:
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Spawner":
        # steps import what their caller can import (as multiprocessing's spawn does)
        path = os.pathsep.join(p for p in [os.getcwd(), *sys.path] if p and os.path.isdir(p))
        self._proc = spawn([sys.executable, "-m", "fluid_core.flow.spawner"], log_path=self._log_path,
                           stdout=subprocess.PIPE, stdin=subprocess.PIPE, env={"PYTHONPATH": path})
        if self._readline() != "ready":
            self.close()
            raise SpawnerError(f"the step helper did not start; see {self._log_path}")
        return self

    def _readline(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        line: bytes = self._proc.stdout.readline()
        return line.decode().strip()

    def spawn(self, request: dict[str, Any], result_path: str, log_path: str, target: str = RUN_STEP) -> int:
        """Fork a step running ``target(request, result_path, log_path)`` (a
        ``module:function``, by default the operation runner); its pid."""
        if self._proc is None or self._proc.poll() is not None:
            raise SpawnerError(f"the step helper is not running; see {self._log_path}")
        assert self._proc.stdin is not None
        job = {"target": target, "request": request, "result": result_path, "log": log_path}
        self._proc.stdin.write((json.dumps(job) + "\n").encode())
        self._proc.stdin.flush()
        answer = self._readline()
        if not answer.isdigit():
            raise SpawnerError(f"the step helper failed to fork; see {self._log_path}")
        return int(answer)

    def close(self) -> None:
        """Stop the helper (steps still running are stopped by their owner first)."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> "Spawner":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def main() -> None:  # pragma: no cover - runs in the helper process
    import importlib  # noqa: PLC0415

    for module in PRELOAD:
        importlib.import_module(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished steps
    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.setsid()
                parent_death_signal()()
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                module, _, function = job["target"].partition(":")
                getattr(importlib.import_module(module), function)(job["request"], job["result"], job["log"])
            finally:
                os._exit(0)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
