"""The baseline hand-over: the same steps passing data through Parquet and ``.npy`` files."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from fluid_core.flow.context import IOStats
from fluid_core.flow.formats import filesystem, read_value, write_value


def _files(entry: Any) -> list[str]:
    if isinstance(entry, dict):
        found = [entry["file"]] if "file" in entry else []
        return found + [f for child in entry.get("items", []) for f in _files(child)]
    return []


class FileContext:
    """``get``/``put`` by key through files in ``directory`` (tables as Parquet,
    arrays as ``.npy``, structures as directories), with the same accounting."""

    def __init__(self, directory: str, params: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.fs, self.root = filesystem(directory)
        self.params = dict(params or {})
        self.stats = IOStats()
        self.written: list[str] = []
        self.node = "local-disk"

    def put(self, key: str, value: Any, **_: Any) -> None:
        started = time.perf_counter()
        entry = write_value(value, self.fs, os.path.join(self.root, key))
        with open(os.path.join(self.root, key + ".entry.json"), "w") as out:
            json.dump(entry, out)
        self.stats.io_seconds += time.perf_counter() - started
        self.stats.bytes_written += sum(os.path.getsize(f) for f in _files(entry))
        self.stats.objects_written += 1
        self.written.append(key)

    def get(self, key: str) -> Any:
        started = time.perf_counter()
        with open(os.path.join(self.root, key + ".entry.json")) as handle:
            entry = json.load(handle)
        value = read_value(entry, self.fs)
        self.stats.io_seconds += time.perf_counter() - started
        self.stats.bytes_read += sum(os.path.getsize(f) for f in _files(entry))
        self.stats.local_reads += 1
        return value


def run_file_step(request: dict[str, Any], report: Callable[[dict[str, Any]], None], log_path: str) -> None:
    """A step process handing over through files in ``request["files"]``."""
    import contextlib  # noqa: PLC0415

    from fluid_core.flow.worker import run_step  # noqa: PLC0415

    run_step(request, report, log_path, lambda r: contextlib.nullcontext(FileContext(r["files"])))


def run_with_files(steps: list[dict[str, Any]], directory: str, workdir: str,
                   timeout: float = 3600.0) -> list[dict[str, Any]]:
    """Run DataProcess ``steps`` one after the other, each in its own process, handing
    data over through files in ``directory``; each step's result (seconds, stats)."""
    from fluid_core.flow.spawner import Spawner  # noqa: PLC0415

    results = []
    with Spawner(os.path.join(workdir, "files-steps.log")) as spawner:
        for index, step in enumerate(steps):
            base = os.path.join(workdir, f"files-{index}-{step['metadata']['name']}")
            request = {"resource": step, "files": directory}
            started = time.perf_counter()
            running = spawner.spawn(request, base + ".log", target=f"{__name__}:run_file_step")
            ended = running.wait(timeout)
            if ended is None:
                running.stop()
                ended = running.poll()
            result = dict(ended.report) if ended is not None and ended.report else {
                "ok": False, "error": f"the step died; see {base}.log"}
            result["wall_seconds"] = time.perf_counter() - started
            results.append(result)
            if not result.get("ok"):
                break
    return results
