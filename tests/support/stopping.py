"""Stopping a process for a test: SIGSTOP, then wait until every thread of it has stopped.

``kill(pid, SIGSTOP)`` returns before the process stops: one thread is woken to take the
signal and stops the others, and meanwhile a thread already running (vineyardd's I/O
thread woken by a request, say) still answers. On two loaded cores a request sent right
after the kill was answered 43 times in 100. A test of a stopped node stops it with
:func:`stopped`, which returns only once every thread shows state ``T``.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

from support.waiting import wait_for
from vineyard_runtime.plumbing.processes import is_alive


def thread_states(pid: int) -> list[str]:
    """The state letter of each thread of ``pid`` (``/proc/<pid>/task/*/stat``)."""
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                states.append(stat.read().rsplit(")", 1)[1].split()[0])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return states


def stop(pid: int) -> None:
    """SIGSTOP ``pid`` and return once all its threads are stopped."""
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: all(state in "tT" for state in thread_states(pid)), timeout=30, interval=0.001,
             message=lambda: f"process {pid} to stop (thread states {thread_states(pid)})")


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process ``pid`` stopped for the block (see :func:`stop`), continued after it."""
    stop(pid)
    try:
        yield
    finally:
        if is_alive(pid):
            os.kill(pid, signal.SIGCONT)
