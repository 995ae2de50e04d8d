"""``fluidv`` as users run it: the console script in a subprocess, exit codes included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import cluster_pids, wait_gone
from vineyard_runtime.local.layout import Layout
from vineyard_runtime.processes import is_alive
from vineyard_runtime.local.state import read_state

#: The console script pip installed next to this interpreter.
FLUIDV = [os.path.join(os.path.dirname(sys.executable), "fluidv")]


def fluidv(*args: str, home: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLUIDV_HOME=home)
    return subprocess.run(FLUIDV + list(args), env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def home(tmp_path):
    """A FLUIDV_HOME whose cluster is taken down, by pid, whatever the test did."""
    path = str(tmp_path / "home")
    try:
        yield path
    finally:
        state = read_state(Layout(path)) if os.path.exists(path) else None
        fluidv("cluster", "down", home=path)
        if state is not None:
            pids = cluster_pids(state)
            for pid in pids:
                if is_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            wait_gone(pids, timeout=5)


def test_up_status_down(home):
    up = fluidv("cluster", "up", "--nodes", "3", "--size", "64Mi", "--zones", "a,a,b", home=home)
    assert up.returncode == 0, up.stderr
    assert "cluster up" in up.stdout and "node-2" in up.stdout
    state = read_state(Layout(home))
    pids = cluster_pids(state)

    table = fluidv("cluster", "status", home=home)
    assert table.returncode == 0, table.stderr
    for word in ("node-0", "node-2", "healthy", "64.0 MiB"):
        assert word in table.stdout

    listed = json.loads(fluidv("cluster", "status", "--json", home=home).stdout)
    assert [n["name"] for n in listed] == ["node-0", "node-1", "node-2"]
    assert [n["labels"]["topology.kubernetes.io/zone"] for n in listed] == ["a", "a", "b"]
    for row in listed:
        assert row["health"] == "healthy" and row["memory_limit"] == 64 * 2**20
        assert {"instance_id", "pid", "socket", "rpc_endpoint", "memory_used", "objects",
                "restarts"} <= set(row)

    again = fluidv("cluster", "up", home=home)
    assert again.returncode == 1 and "already runs" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    down = fluidv("cluster", "down", home=home)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert wait_gone(pids, timeout=5) == []
    assert not any(os.path.exists(n.socket) for n in state.nodes)


def test_down_and_status_when_nothing_runs(home):
    down = fluidv("cluster", "down", home=home)
    assert down.returncode == 0 and "nothing to stop" in down.stdout
    status = fluidv("cluster", "status", home=home)
    assert status.returncode == 1
    assert status.stderr.strip() == f"error: no cluster runs in {home}; start one with `fluidv cluster up`"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "1Gx"], "is not a size"),
        (["--size", "0"], "must be greater than zero"),
        (["--size", "-1Gi"], "must be greater than zero"),
        (["--size", "4K"], "is not a size (K is not a unit"),
        (["--nodes", "0"], "--nodes must be at least 1"),
        (["--zones", "a,b"], "one non-empty zone per node"),
    ],
)
def test_bad_input_gets_one_line(home, args, message):
    result = fluidv("cluster", "up", *args, home=home)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not os.path.exists(os.path.join(home, "cluster.yaml"))


def test_status_exits_2_when_a_node_is_down(home):
    up = fluidv("cluster", "up", "--nodes", "2", "--size", "64Mi", home=home)
    assert up.returncode == 0, up.stderr
    state = read_state(Layout(home))
    os.unlink(state.nodes[1].socket)  # vineyardd runs on, unreachable: nobody restarts it

    table = fluidv("cluster", "status", home=home)
    assert table.returncode == 2, (table.stdout, table.stderr)
    assert "node-1" in table.stdout and "healthy" in table.stdout  # node-0 still is
    listed = fluidv("cluster", "status", "--json", home=home)
    assert listed.returncode == 2
    health = {n["name"]: n["health"] for n in json.loads(listed.stdout)}
    assert health["node-0"] == "healthy" and health["node-1"] != "healthy"


VALID = """\
apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata: {name: ok}
spec: {}
"""


def test_validate_exits_1_on_an_invalid_document(tmp_path, home):
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID + "---\n" + VALID.replace("name: ok", "name: bad").replace("spec: {}", "spec: {bogus: 1}"))

    passed = fluidv("validate", str(good), home=home)
    assert passed.returncode == 0, passed.stderr
    assert "ok      Dataset/ok" in passed.stdout
    failed = fluidv("validate", str(bad), home=home)
    assert failed.returncode == 1
    assert "ok      Dataset/ok" in failed.stdout
    assert "invalid Dataset/bad: spec.bogus:" in failed.stderr
    warned = tmp_path / "warned.yaml"
    warned.write_text("apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata: {name: warm}\n"
                      "spec: {dataset: {name: d}, tolerations: [{key: a, operator: Exists}]}\n")
    accepted = fluidv("validate", str(warned), home=home)
    assert accepted.returncode == 0 and "ok      DataLoad/warm" in accepted.stdout
    assert "warning DataLoad/warm: spec.tolerations:" in accepted.stderr and "local cluster" in accepted.stderr
    missing = fluidv("validate", str(tmp_path / "nothing.yaml"), home=home)
    assert missing.returncode != 0 and missing.stderr.strip()
