"""The Ray baseline: the demo's four stage functions, each in a Ray actor process, handing
data over through Ray's object store (``ray.put`` in one stage, ``ray.get`` in the next).
Used by the pipeline benchmark; needs the ``bench`` extra (Ray is imported lazily)."""

from __future__ import annotations

import time
from typing import Any

from fluid_core.flow.context import IOStats


class RayContext:
    """``get``/``put`` by key on Ray object refs, timing both as hand-over."""

    def __init__(self, refs: dict[str, Any], params: dict[str, str]) -> None:
        self.refs, self.params = dict(refs), dict(params)
        self.stats = IOStats()
        self.node = "ray"

    def get(self, key: str) -> Any:
        import ray  # noqa: PLC0415

        started = time.perf_counter()
        value = ray.get(self.refs[key])
        self.stats.io_seconds += time.perf_counter() - started
        self.stats.local_reads += 1
        return value

    def put(self, key: str, value: Any, **_: Any) -> None:
        import ray  # noqa: PLC0415

        started = time.perf_counter()
        self.refs[key] = ray.put(value)
        self.stats.io_seconds += time.perf_counter() - started
        self.stats.objects_written += 1


class _Stage:
    """One stage's process (a Ray actor): it owns what it puts for as long as it lives."""

    def run(self, function: Any, refs: dict[str, Any], params: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        started = time.perf_counter()
        ctx = RayContext(refs, params)
        function(ctx)
        return ctx.refs, {"seconds": time.perf_counter() - started, "io_seconds": ctx.stats.io_seconds}


def run_with_ray(stages: list[tuple[Any, dict[str, str]]]) -> list[dict[str, Any]]:
    """Run ``(function, params)`` stages one after the other, each in its own Ray actor
    process (Ray must be initialised); each stage's seconds and hand-over seconds. The
    refs travel inside a dict, so Ray passes them on unresolved and each stage reads
    what it needs, as this project's steps do."""
    import ray  # noqa: PLC0415

    actor = ray.remote(num_cpus=0, max_restarts=0)(_Stage)
    actors = [actor.remote() for _ in stages]
    try:
        ray.get([a.__ray_ready__.remote() for a in actors])  # processes up before timing
        refs: dict[str, Any] = {}
        results = []
        for index, ((function, params), process) in enumerate(zip(stages, actors)):
            refs, report = ray.get(process.run.remote(function, refs, params))
            results.append({"index": index, **report})
        return results
    finally:
        for process in actors:
            ray.kill(process)
