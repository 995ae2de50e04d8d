"""Targets the spawner tests fork (``module:function`` of ``(request, report, log_path)``)."""

from __future__ import annotations

import os
import time


def answer(request, report, log_path):
    print("noise on stdout that must not reach the helper's protocol")
    report({"ok": True, "summary": request["say"], "pid": os.getpid(), "blob": "x" * request.get("size", 0)})


def sleep_then_answer(request, report, log_path):
    with open(request["pidfile"], "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(request["seconds"])
    report({"ok": True, "summary": "slept"})


def leave(request, report, log_path):
    os._exit(3)
