"""Fixtures for benchmarks: real local clusters, stopped even when a run fails."""

from __future__ import annotations

import os
import signal

import pytest

from vineyard_runtime.local import LocalCluster
from vineyard_runtime.local.processes import is_alive


def stop_for_sure(local: LocalCluster) -> None:
    """Stop ``local`` and SIGKILL whatever of it survives."""
    try:
        state = local.state
        pids = [state.supervisor_pid, state.etcd.pid] + [n.pid for n in state.nodes]
    except Exception:  # noqa: BLE001 - already gone
        pids = []
    try:
        local.stop()
    except Exception:  # noqa: BLE001 - fall through to the kill
        pass
    for pid in pids:
        if pid and is_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(
    scope="module",
    params=[(False, False), (True, False), (False, True)],
    ids=["compression-off", "compression-on", "compression-off-reserved"],
)
def two_nodes(request, tmp_path_factory):
    """Two 3 GiB nodes: migration compression off or on; memory faulted in at start or not."""
    compression, reserve = request.param
    local = LocalCluster(nodes=2, size="3Gi", compression=compression, reserve_memory=reserve,
                         workdir=str(tmp_path_factory.mktemp("bench")))
    try:
        local.start()
        yield local
    finally:
        stop_for_sure(local)
