"""Stopping a test's local clusters for sure: every daemon a cluster ran, found by its
recorded pids, stopped and, if need be, SIGKILLed; waits until they are gone."""

from __future__ import annotations

import os
import signal

from vineyard_runtime.local import LocalCluster
from vineyard_runtime.local.state import ClusterState
from vineyard_runtime.plumbing.processes import is_alive
from vineyard_runtime.plumbing.waiting import wait_until


def cluster_pids(state: ClusterState) -> list[int]:
    """Every pid a cluster runs: supervisor, etcd and each vineyardd."""
    pids = [state.supervisor_pid, state.etcd.pid] + [n.pid for n in state.nodes]
    return [p for p in pids if p]


def wait_gone(pids: list[int], timeout: float = 30.0) -> list[int]:
    """Wait until none of ``pids`` runs; return those still alive at the deadline."""
    wait_until(lambda: not any(is_alive(p) for p in pids), timeout)
    return [p for p in pids if is_alive(p)]


def kill_recorded(state: ClusterState | None) -> None:
    """SIGKILL every daemon ``state`` records that still runs, and wait until all are gone."""
    if state is None:
        return
    pids = cluster_pids(state)
    for pid in pids:
        if is_alive(pid):
            os.kill(pid, signal.SIGKILL)
    wait_gone(pids)


def force_stop(local: LocalCluster, seen: set[int]) -> None:
    """Stop a cluster and SIGKILL anything of it that still runs."""
    try:
        seen.update(cluster_pids(local.state))
    except Exception:  # noqa: BLE001 - the cluster may already be gone
        pass
    try:
        local.stop()
    except Exception:  # noqa: BLE001 - fall through to the kill below
        pass
    for pid in seen:
        if is_alive(pid):
            os.kill(pid, signal.SIGKILL)
    wait_gone(list(seen), timeout=10)


__all__ = ["cluster_pids", "force_stop", "kill_recorded", "wait_gone"]
