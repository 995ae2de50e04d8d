"""``fluidv run`` as users run it: stopped by a signal, and two runs sharing one cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from support.waiting import wait_for
from support.localcluster import wait_gone
from vineyard_runtime.local.cluster import is_running
from vineyard_runtime.plumbing.processes import is_alive

STEPS = os.path.join(os.path.dirname(__file__), "flow_steps.py")
API = "data.fluid.io/v1alpha1"


def sleeping_flow(path, name: str, pidfile, seconds: float = 120) -> str:
    """A flow of one dataset and one step that writes its pid, then sleeps."""
    documents = [
        {"apiVersion": API, "kind": "Dataset", "metadata": {"name": name}, "spec": {}},
        {"apiVersion": API, "kind": "DataProcess", "metadata": {"name": f"{name}-sleep"},
         "spec": {"dataset": {"name": name}, "processor": {
             "function": f"{STEPS}:sleeper", "params": {"pidfile": str(pidfile), "seconds": str(seconds)}}}},
    ]
    path.write_text(yaml.safe_dump_all(documents))
    return str(path)


def fluidv_run(flow: str, workdir: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fluid_core.cli", "run", flow, "--json", "--workdir", workdir,
                             "--nodes", "1", "--size", "64Mi"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def step_pid(pidfile) -> int:
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), timeout=60, message="the step started")
    return int(pidfile.read_text())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_stops_every_step_and_marks_it_failed(tmp_path, shared_cluster, signum):
    pidfile = tmp_path / "step.pid"
    run = fluidv_run(sleeping_flow(tmp_path / "flow.yaml", "sig", pidfile), shared_cluster.workdir)
    try:
        step = step_pid(pidfile)
        run.send_signal(signum)
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == 128 + signum, err
    assert wait_gone([step]) == [], "the step process was stopped"
    if signum != signal.SIGINT:  # Ctrl-C aborts the command before it reports
        assert f"stopped by {signum.name}" in err
        (report,) = json.loads(out)
        assert report["phase"] == "Failed" and signum.name in report["message"], report
    assert is_running(shared_cluster.workdir), "a cluster the run did not start stays up"


def test_a_cluster_started_by_a_run_stays_up_under_another_run(tmp_path):
    workdir = str(tmp_path / "wd")
    first_pid, second_pid = tmp_path / "first.pid", tmp_path / "second.pid"
    first = fluidv_run(sleeping_flow(tmp_path / "first.yaml", "first", first_pid, seconds=1), workdir)
    second = None
    try:
        step_pid(first_pid)  # the first run has started the cluster
        second = fluidv_run(sleeping_flow(tmp_path / "second.yaml", "second", second_pid, seconds=6), workdir)
        step_pid(second_pid)
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        assert is_running(workdir), "the run that started the cluster left it to the other run"
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert [r["phase"] for r in json.loads(out)] == ["Complete"]
        wait_for(lambda: not is_running(workdir), timeout=30, message="the last run out stopped the cluster")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # it stops the cluster it started
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        _stop_leftover(workdir)


def _stop_leftover(workdir: str) -> None:
    """Stop a cluster a failed test left running in ``workdir`` (by its pids)."""
    if not is_running(workdir):
        return
    from support.localcluster import cluster_pids, force_stop
    from vineyard_runtime.local import LocalCluster

    local = LocalCluster.attach(workdir)
    force_stop(local, set(cluster_pids(local.state)))
    assert not any(is_alive(p) for p in cluster_pids(local.state))
