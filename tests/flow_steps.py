"""Step functions the flow tests run in step processes (referenced by file path)."""

from __future__ import annotations

import os
import time


def double(ctx):
    ctx.put("doubled", ctx.get("nums") * 2)


def total(ctx):
    ctx.put("total", {"sum": float(ctx.get("doubled").sum())})


def explode(ctx):
    print("about to fail on", ctx.node)
    raise RuntimeError("the model diverged")


def count_runs(ctx):
    previous = ctx.get("count") if "count" in ctx.keys("count") else 0
    ctx.put("count", int(previous) + 1, run_labels=False)


def scratch_then_result(ctx):
    ctx.put("scratch", list(range(10)))
    ctx.put("result", {"ok": True})


def slow(ctx):
    time.sleep(float(ctx.params.get("seconds", "1")))


def sleeper(ctx):
    """Say its pid in the file params name, then sleep (a step that tests stop)."""
    with open(ctx.params["pidfile"], "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(float(ctx.params.get("seconds", "120")))
