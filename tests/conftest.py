"""Shared fixtures: real local clusters, stopped by pid even when a test fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from vineyard_runtime.local import LocalCluster
from vineyard_runtime.processes import is_alive
from vineyard_runtime.local.state import ClusterState

# The emulated cluster has no DNS for in-cluster etcd names: the operator reads no
# object directory unless a test names a real etcd and turns the reading on.
os.environ.setdefault("FLUIDV_LOCATIONS_SECONDS", "0")


def cluster_pids(state: ClusterState) -> list[int]:
    """Every pid a cluster runs: supervisor, etcd and each vineyardd."""
    pids = [state.supervisor_pid, state.etcd.pid] + [n.pid for n in state.nodes]
    return [p for p in pids if p]


def wait_gone(pids: list[int], timeout: float = 30.0) -> list[int]:
    """Wait until none of ``pids`` runs; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if is_alive(p)]
        if not alive:
            return []
        time.sleep(0.05)
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


@pytest.fixture
def make_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Factory of started clusters; every one is stopped (by pid) after the test."""
    started: list[tuple[LocalCluster, set[int]]] = []

    def make(nodes: int = 3, size: str = "256Mi", **kwargs: object) -> LocalCluster:
        kwargs.setdefault("workdir", str(tmp_path_factory.mktemp("cluster")))
        local = LocalCluster(nodes=nodes, size=size, **kwargs)  # type: ignore[arg-type]
        seen: set[int] = set()
        started.append((local, seen))
        local.start()
        seen.update(cluster_pids(local.state))
        return local

    try:
        yield make
    finally:
        for local, seen in started:
            force_stop(local, seen)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-node cluster shared by the tests of one module that do not break it."""
    local = LocalCluster(nodes=3, size="256Mi", zones=["a", "a", "b"],
                         workdir=str(tmp_path_factory.mktemp("shared")))
    seen: set[int] = set()
    try:
        local.start()
        seen.update(cluster_pids(local.state))
        yield local
    finally:
        force_stop(local, seen)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = ""):
    """Poll ``predicate`` until it returns a truthy value; fail with ``message`` otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last one
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting: {message} (last error: {last_error!r})")


@pytest.fixture(scope="module")
def stores(shared_cluster) -> Iterator[dict]:
    """An ``objects`` store per node of the shared cluster, closed afterwards."""
    import objects

    opened = {n.name: objects.connect(n.socket) for n in shared_cluster.nodes}
    try:
        yield opened
    finally:
        for store in opened.values():
            store.close()


def run_python(code: str, socket: str) -> subprocess.CompletedProcess:
    """Run ``code`` (dedented) in a new interpreter connected to the node at ``socket``."""
    env = dict(os.environ, VINEYARD_IPC_SOCKET=socket)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=120)


class Holder(subprocess.Popen):
    """A reader in another process that gets ``name`` and holds its zero-copy view
    until told: ``look()`` gives the min and max the view shows now, ``let_go()`` ends it.
    It connects through ``socket``, or ``config`` (a vineyard-config.yaml)."""

    CODE = """
        import sys, numpy as np, pyarrow as pa, objects
        store = objects.connect()
        value = store.get(sys.argv[1])
        print("holding", flush=True)
        sys.stdin.readline()  # the test deletes, replaces and overwrites meanwhile
        column = value if isinstance(value, np.ndarray) else value.column(0).to_numpy()
        print(float(column.min()), float(column.max()), flush=True)
        sys.stdin.readline()
    """

    def __init__(self, name: str, *, socket: str | None = None, config: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("VINEYARD_IPC_SOCKET", "VINEYARD_CONFIG")}
        env.update({"VINEYARD_IPC_SOCKET": socket} if socket else {"VINEYARD_CONFIG": str(config)})
        super().__init__([sys.executable, "-c", textwrap.dedent(self.CODE), name], env=env, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.stdout.readline().strip() == "holding", self.stderr.read()

    def look(self) -> list[str]:
        self.stdin.write("\n")
        self.stdin.flush()
        return self.stdout.readline().split()

    def let_go(self) -> None:
        self.stdin.write("\n")
        self.stdin.flush()
        assert self.wait(timeout=30) == 0, self.stderr.read()


def memory_used(store) -> int:
    """Bytes of shared memory in use on the node of ``store``."""
    return int(store.client.ipc_client.status.memory_usage)


def assert_same(a, b) -> None:
    """``b`` (what was read) equals ``a`` (what was written), in type and dtype too."""
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    elif isinstance(a, (pa.Table, pa.RecordBatch, pa.Array, pa.ChunkedArray)):
        assert type(a) is type(b) and a.equals(b)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b)
    elif (torch := sys.modules.get("torch")) is not None and isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b
