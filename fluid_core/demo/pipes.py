"""The pickle baseline: each stage receives everything before it through a pipe."""

from __future__ import annotations

import os
import pickle
import time
from typing import Any

from fluid_core.flow.context import IOStats


class PipeContext:
    """``get``/``put`` on a dict that travels from stage to stage pickled (protocol 5)."""

    def __init__(self, values: dict[str, Any], params: dict[str, str] | None = None) -> None:
        self.values = values
        self.params = dict(params or {})
        self.stats = IOStats()
        self.node = "pipe"

    def get(self, key: str) -> Any:
        self.stats.local_reads += 1
        return self.values[key]

    def put(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value
        self.stats.objects_written += 1


def _read_exactly(fd: int, size: int) -> bytearray:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise EOFError("the previous stage closed its pipe early")
        got += n
    return buffer


def receive(fd: int) -> tuple[dict[str, Any], float]:
    """Values sent by ``send`` on ``fd``, and the seconds it took from the first byte
    (waiting for the previous stage to finish is not hand-over time)."""
    header = _read_exactly(fd, 16)
    started = time.perf_counter()
    meta_size, count = int.from_bytes(header[:8], "little"), int.from_bytes(header[8:], "little")
    sizes = [int.from_bytes(_read_exactly(fd, 8), "little") for _ in range(count)]
    meta = _read_exactly(fd, meta_size)
    buffers = [_read_exactly(fd, size) for size in sizes]
    values = pickle.loads(meta, buffers=buffers)
    return values, time.perf_counter() - started


def send(fd: int, values: dict[str, Any]) -> float:
    """Pickle ``values`` with out-of-band buffers and write them to ``fd``; seconds taken."""
    started = time.perf_counter()
    buffers: list[pickle.PickleBuffer] = []
    meta = pickle.dumps(values, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    chunks = [len(meta).to_bytes(8, "little") + len(raws).to_bytes(8, "little")]
    chunks += [r.nbytes.to_bytes(8, "little") for r in raws]
    for chunk in [*chunks, meta, *raws]:
        view = memoryview(chunk).cast("B")  # type: ignore[arg-type]  # bytes or a PickleBuffer's raw view
        while view:
            view = view[os.write(fd, view):]
    return time.perf_counter() - started


def run_with_pipes(stages: list[tuple[Any, dict[str, str]]]) -> list[dict[str, Any]]:
    """Run ``(function, params)`` stages as a chain of forked processes joined by pipes;
    each stage's seconds and hand-over seconds (receive + send)."""
    import json  # noqa: PLC0415

    results = []
    report_r, report_w = os.pipe()
    inbound: int | None = None
    pids = []
    for index, (function, params) in enumerate(stages):
        outbound_r, outbound_w = os.pipe() if index < len(stages) - 1 else (None, None)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the stage process
            try:
                os.close(report_r)
                if outbound_r is not None:
                    os.close(outbound_r)
                started = time.perf_counter()
                values, io = receive(inbound) if inbound is not None else ({}, 0.0)
                ctx = PipeContext(values, params)
                function(ctx)
                if outbound_w is not None:
                    io += send(outbound_w, ctx.values)
                report = {"index": index, "seconds": time.perf_counter() - started, "io_seconds": io}
                os.write(report_w, (json.dumps(report) + "\n").encode())
            finally:
                os._exit(0)
        pids.append(pid)
        if inbound is not None:
            os.close(inbound)
        if outbound_w is not None:
            os.close(outbound_w)
        inbound = outbound_r
    os.close(report_w)
    with os.fdopen(report_r) as reports:
        for line in reports:
            results.append(json.loads(line))
    for pid in pids:
        os.waitpid(pid, 0)
    return sorted(results, key=lambda r: r["index"])
