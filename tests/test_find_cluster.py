"""A cluster that ``fluidv cluster up`` started is found the way ``fluidv run`` finds it
(``--workdir``/``workdir=``, ``$FLUIDV_HOME``, ``./.fluidv``) by ``objects.connect()``
and ``fluidv mount``, with no socket path copied by hand."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from support.localcluster import kill_recorded
from support.waiting import wait_for
from objects.fusemount import is_mounted, unmount
from vineyard_runtime.local.layout import Layout
from vineyard_runtime.local.state import read_state
from vineyard_runtime.plumbing.processes import terminate

FLUIDV = os.path.join(os.path.dirname(sys.executable), "fluidv")


def run(argv: list[str], env: dict[str, str], cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def bare_env(**extra: str) -> dict[str, str]:
    """The environment without any variable that names a node or a workdir."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VINEYARD_IPC_SOCKET", "VINEYARD_CONFIG", "VINEYARD_RPC_ENDPOINT", "FLUIDV_HOME")}
    return {**env, **extra}


@pytest.fixture
def project(tmp_path):
    """A project folder whose ``./.fluidv`` cluster is taken down by pid after the test."""
    workdir = tmp_path / ".fluidv"
    try:
        yield tmp_path
    finally:
        state = read_state(Layout(str(workdir))) if workdir.exists() else None
        run([FLUIDV, "cluster", "down"], bare_env(), str(tmp_path))
        kill_recorded(state)


PUT_AND_GET = textwrap.dedent("""
    import sys, numpy as np, objects
    kwargs = dict(a.split("=", 1) for a in sys.argv[1:])
    with objects.connect(**kwargs) as store:
        ref = store.put(np.arange(100_000.0), "default/demo/x", replace=True)
        print(ref.node, float(store.get("default/demo/x").sum()))
""")


def test_connect_and_mount_find_the_cluster_of_the_working_directory(project):
    env = bare_env()
    up = run([FLUIDV, "cluster", "up", "--nodes", "2", "--size", "64Mi"], env, str(project))
    assert up.returncode == 0, up.stderr
    config = project / ".fluidv" / "vineyard-config.yaml"
    assert config.exists() and "Nodes:" in config.read_text()
    assert oct(config.stat().st_mode & 0o777) == "0o600", "it carries the blob servers' token"

    found = run([sys.executable, "-c", PUT_AND_GET], env, str(project))  # ./.fluidv
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["node-0", str(float(np.arange(100_000.0).sum()))]
    elsewhere = str(project / "elsewhere")
    os.mkdir(elsewhere)
    by_home = run([sys.executable, "-c", PUT_AND_GET, "node=node-1"], bare_env(FLUIDV_HOME=str(project / ".fluidv")),
                  elsewhere)
    assert by_home.returncode == 0, by_home.stderr
    assert by_home.stdout.split()[0] == "node-1"
    by_argument = run([sys.executable, "-c", PUT_AND_GET, f"workdir={project / '.fluidv'}", "node=node-2"],
                      env, elsewhere)
    assert by_argument.returncode != 0
    assert "names no node 'node-2' (its nodes: node-0, node-1)" in by_argument.stderr

    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        pytest.skip("the mount part needs /dev/fuse and fusermount3 (Debian package fuse3)")
    point = project / "mnt"
    point.mkdir()
    mount = subprocess.Popen([FLUIDV, "mount", "demo", str(point)], env=env, cwd=str(project),
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: is_mounted(str(point)), message="mounted")
        assert np.load(point / "x.npy").sum() == np.arange(100_000.0).sum()
    finally:
        terminate([mount.pid], timeout=15)
        mount.wait()
        unmount(str(point))

    down = run([FLUIDV, "cluster", "down"], env, str(project))
    assert down.returncode == 0, down.stderr
    assert not config.exists(), "a stopped cluster publishes no config"


def test_without_a_cluster_connect_and_mount_say_where_they_looked(tmp_path):
    env = bare_env()
    failed = run([sys.executable, "-c", PUT_AND_GET], env, str(tmp_path))
    assert failed.returncode == 1
    assert f"no local cluster runs in {tmp_path / '.fluidv'}" in failed.stderr
    assert "fluidv cluster up" in failed.stderr

    point = tmp_path / "mnt"
    point.mkdir()
    mount = run([FLUIDV, "mount", "demo", str(point)], env, str(tmp_path))
    assert mount.returncode == 1
    assert mount.stderr.startswith("error: the FUSE view did not mount at"), mount.stderr
    assert f"no local cluster runs in {tmp_path / '.fluidv'}" in mount.stderr
    assert "Traceback" not in mount.stderr and "^^^" not in mount.stderr
    assert not is_mounted(str(point))
