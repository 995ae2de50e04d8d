"""Fixtures for benchmarks: real local clusters, stopped even when a run fails."""

from __future__ import annotations

import os
import signal

import pytest

from vineyard_runtime.local import LocalCluster
from vineyard_runtime.processes import is_alive


#: The main job's figures per channel, (hand-over seconds, stage seconds), filled by
#: the pipeline benchmark and printed as one table at the end of the run.
PIPELINE: dict[str, tuple[float, float]] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    """One comparison table of the main job's channels: hand-over against files and
    Ray, whole stages against files."""
    if not PIPELINE:
        return
    files = PIPELINE.get("files (Parquet, .npy)")
    ray = PIPELINE.get("Ray object store")
    write = terminalreporter.write_line
    write("")
    write("main job (fluidv demo's four stages), last round of each channel:")
    write(f"{'channel':<30}{'hand-over s':>13}{'stages s':>10}{'files/this':>12}{'this/Ray':>10}{'files/this, stages':>20}")
    for channel, (handover, stages) in PIPELINE.items():
        vs_files = f"{files[0] / handover:.1f}x" if files and handover else "-"
        vs_ray = f"{handover / ray[0]:.2f}x" if ray and ray[0] else "-"
        whole = f"{files[1] / stages:.1f}x" if files and stages else "-"
        write(f"{channel:<30}{handover:>13.3f}{stages:>10.3f}{vs_files:>12}{vs_ray:>10}{whole:>20}")


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
