"""``fluidv`` as users run it: the console script in a subprocess, exit codes included."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from support.localcluster import cluster_pids, kill_recorded, wait_gone
from vineyard_runtime.errors import ClusterAlreadyRunning
from vineyard_runtime.local import LocalCluster
from vineyard_runtime.local.layout import Layout
from vineyard_runtime.local.state import read_state

#: The console script pip installed next to this interpreter.
FLUIDV = [os.path.join(os.path.dirname(sys.executable), "fluidv")]


def fluidv(*args: str, home: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(FLUIDV + list(args), env=dict(os.environ, FLUIDV_HOME=home, **(env or {})),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def home(tmp_path):
    """A FLUIDV_HOME whose cluster is taken down, by pid, whatever the test did."""
    path = str(tmp_path / "home")
    try:
        yield path
    finally:
        state = read_state(Layout(path)) if os.path.exists(path) else None
        fluidv("cluster", "down", home=path)
        kill_recorded(state)


def assert_fits(output: str, columns: int) -> None:
    """Every line of ``output`` fits ``columns`` and no cell was cut short with an ellipsis."""
    assert "…" not in output and "..." not in output, output
    too_long = [line for line in output.splitlines() if len(line) > columns]
    assert not too_long, too_long


def test_up_status_down(home):
    up = fluidv("cluster", "up", "--nodes", "3", "--size", "64MiB", "--zones", "a,a,b", home=home)
    assert up.returncode == 0, up.stderr
    assert "cluster up" in up.stdout and "node-2" in up.stdout and "of 64.0 MiB" in up.stdout
    assert "README" not in up.stdout and "firewall the RPC ports" in up.stdout  # the note says it all itself
    assert "pkg_resources" not in up.stderr
    state = read_state(Layout(home))
    pids = cluster_pids(state)

    for columns in (80, 120):
        table = fluidv("cluster", "status", home=home, env={"COLUMNS": str(columns)})
        assert table.returncode == 0, table.stderr
        assert table.stderr == ""  # vineyard's own import warning is not shown
        lines = table.stdout.splitlines()
        assert lines[0].split() == ["phase", "Ready"]
        assert lines[1].split() == ["workdir", home] and state.etcd.endpoint in lines[2]
        for word in ("node-0", "node-2", "healthy", "64.0 MiB"):
            assert word in table.stdout
        rows = {line.split()[0]: line.split() for line in lines if line.startswith("node-")}
        assert [rows[n][1] for n in ("node-0", "node-1", "node-2")] == ["a", "a", "b"]
        assert all(row[-1] == "healthy" for row in rows.values())
        assert_fits(table.stdout, columns)
        wide = fluidv("cluster", "status", "--wide", home=home, env={"COLUMNS": str(columns)})
        assert wide.returncode == 0, wide.stderr
        assert "…" not in wide.stdout
        for node in state.nodes:
            assert f"socket {node.socket}" in wide.stdout and f"rpc {node.rpc_endpoint}" in wide.stdout

    status = json.loads(fluidv("cluster", "status", "--json", home=home).stdout)
    assert status["phase"] == "Ready" and status["workdir"] == home
    assert status["etcd"]["endpoint"] == state.etcd.endpoint and status["etcd"]["health"] == "healthy"
    listed = status["nodes"]
    assert [n["name"] for n in listed] == ["node-0", "node-1", "node-2"]
    assert [n["labels"]["topology.kubernetes.io/zone"] for n in listed] == ["a", "a", "b"]
    for row in listed:
        assert row["health"] == "healthy" and row["memory_limit"] == 64 * 2**20
        assert {"instance_id", "pid", "socket", "rpc_endpoint", "memory_used", "objects",
                "restarts"} <= set(row)

    with pytest.raises(ClusterAlreadyRunning) as caught:  # from Python, said in Python's terms
        LocalCluster(nodes=1, size="64Mi", workdir=home).start()
    assert str(caught.value) == (f"a cluster already runs in {home}; use it with LocalCluster.attach({home!r}), stop "
                                 "it with that one's stop() or `fluidv cluster down`, or give another workdir=")
    again = fluidv("cluster", "up", home=home)
    assert again.returncode == 1
    assert again.stderr.strip() == (f"error: a cluster already runs in {home}; stop it with `fluidv cluster down` "
                                    "or choose another --workdir")

    down = fluidv("cluster", "down", home=home)
    assert down.returncode == 0, down.stderr
    said = down.stdout.splitlines()
    assert said[0].startswith(f"stopping etcd (pid {state.etcd.pid}) and 3 node(s) (node-0 pid {state.nodes[0].pid}")
    assert said[-1].startswith(f"cluster in {home} stopped in ")
    assert wait_gone(pids) == []
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
        (["--size", "1XB"], "write a number and a unit: KiB, MiB, GiB, TiB"),
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

    table = fluidv("cluster", "status", home=home, env={"COLUMNS": "80"})
    assert table.returncode == 2, (table.stdout, table.stderr)
    assert table.stdout.splitlines()[0].split() == ["phase", "Degraded"]
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines() if line.startswith("node-")}
    assert rows["node-0"][-1] == "healthy" and rows["node-1"][-1] == "down"
    assert "node-1: down: socket missing" in table.stdout  # the details, under the table
    assert_fits(table.stdout, 80)
    listed = fluidv("cluster", "status", "--json", home=home)
    assert listed.returncode == 2
    status = json.loads(listed.stdout)
    assert status["phase"] == "Degraded"
    health = {n["name"]: n["health"] for n in status["nodes"]}
    assert health["node-0"] == "healthy" and health["node-1"] == "down: socket missing"


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
    assert passed.stdout == f"ok      Dataset/ok ({good}:1)\n"
    failed = fluidv("validate", str(bad), home=home)
    assert failed.returncode == 1
    assert f"ok      Dataset/ok ({bad}:1)" in failed.stdout
    assert f"invalid Dataset/bad ({bad}:6): spec.bogus: unknown field `bogus`; the fields here are:" in failed.stderr
    assert failed.stderr.splitlines()[-1] == "error: 1 problem(s) found"
    warned = tmp_path / "warned.yaml"
    warned.write_text(VALID.replace("name: ok", "name: d") + "---\n"
                      "apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata: {name: warm}\n"
                      "spec: {dataset: {name: d}, tolerations: [{key: a, operator: Exists}]}\n")
    accepted = fluidv("validate", str(warned), home=home)
    assert accepted.returncode == 0 and f"ok      DataLoad/warm ({warned}:6)" in accepted.stdout
    assert f"warning DataLoad/warm ({warned}:6): spec.tolerations:" in accepted.stderr
    assert "local cluster" in accepted.stderr
    missing = fluidv("validate", str(tmp_path / "nothing.yaml"), home=home)
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == [f"error   {tmp_path / 'nothing.yaml'} does not exist",
                                           "error: 1 problem(s) found"]
