"""One operation in its own process on its node: connect, run, report the result."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def store_context(request: dict[str, Any]) -> Iterator[Any]:
    """The step's context: its dataset on the node whose socket the request names."""
    import objects  # noqa: PLC0415
    from fluid_core.flow.context import StepContext  # noqa: PLC0415

    with contextlib.ExitStack() as stack:
        store = stack.enter_context(objects.connect(request["socket"]))
        ctx = StepContext(store, request["namespace"], request["dataset"],
                          run_id=request["run_id"], operation=request["operation"])
        ctx.mounts = list(request.get("mounts") or [])
        ctx.replica_stores = [stack.enter_context(objects.connect(s)) for s in request.get("replicas") or []]
        yield ctx


def run_step(request: dict[str, Any], report: Callable[[dict[str, Any]], None], log_path: str,
             open_context: Callable[[dict[str, Any]], Any] = store_context) -> None:
    """Entry point of a step process (``request`` says what, where and for which run);
    ``report`` takes its result, ``open_context`` makes the context the step gets and
    puts through."""
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    started = time.perf_counter()
    result: dict[str, Any] = {"ok": False}
    ctx = None
    try:
        from fluid_core.flow.ops import execute  # noqa: PLC0415
        from fluid_core.models import parse  # noqa: PLC0415

        resource = parse(request["resource"])
        with open_context(request) as ctx:
            summary = execute(resource.kind, resource.spec, ctx)
        result = {"ok": True, "summary": summary}
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the runner
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        result["seconds"] = time.perf_counter() - started
        if ctx is not None:
            result["stats"] = ctx.stats.to_dict()
            result["written"] = ctx.written
        log.flush()
        report(result)
