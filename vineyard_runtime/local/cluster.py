"""``LocalCluster``: start, attach to, inspect and stop a local Vineyard cluster."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from vineyard_runtime import errors
from vineyard_runtime.errors import (
    ClusterAlreadyRunning,
    ClusterNotRunning,
    ClusterStartError,
    VineyardRuntimeError,
)
from vineyard_runtime.local.config import ClusterConfig
from vineyard_runtime.node.holds import holds_dir
from vineyard_runtime.local.layout import Layout, default_workdir
from vineyard_runtime.node.probe import connect_vineyard
from vineyard_runtime.plumbing.processes import is_alive, log_tail, owned, spawn, terminate
from vineyard_runtime.local.state import ClusterState, NodeState, read_state
from vineyard_runtime.local.status import NodeStatus, collect_status
from vineyard_runtime.plumbing.ports import require_free
from vineyard_runtime.plumbing.waiting import wait_until

STOP_TIMEOUT = 30.0


def is_running(workdir: str | None = None) -> bool:
    """True when a supervisor holds the lock of ``workdir``."""
    layout = Layout(os.path.abspath(workdir or default_workdir()))
    try:
        handle = open(layout.lock_file)  # noqa: SIM115 - closed by the `with` below
    except (FileNotFoundError, NotADirectoryError):
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def clean_stale(workdir: str | None = None) -> list[str]:
    """Remove what a cluster that was not stopped cleanly left in ``workdir``.

    Kills recorded daemons that still run (checking their command line, so a reused
    pid is never hit), removes sockets and the state file. Returns what was done.
    """
    layout = Layout(os.path.abspath(workdir or default_workdir()))
    if is_running(layout.workdir):
        return []
    done: list[str] = []
    try:
        state = read_state(layout)
    except (OSError, ValueError, KeyError, TypeError):
        state = None
        done.append(f"removed unreadable {layout.state_file}")
    if state is not None:
        pids = [n.pid for n in state.nodes if owned(n.pid, n.socket)]
        if owned(state.etcd.pid, state.etcd.data_dir):
            pids.append(state.etcd.pid)
        if state.supervisor_pid and owned(state.supervisor_pid, "vineyard_runtime.local.supervisor"):
            pids.insert(0, state.supervisor_pid)
        if pids:
            terminate([p for p in pids if p])
            done.append(f"stopped leftover processes {sorted(p for p in pids if p)}")
        for node in state.nodes:
            shutil.rmtree(holds_dir(node.socket), ignore_errors=True)
            if os.path.lexists(node.socket):
                os.unlink(node.socket)
                done.append(f"removed stale socket {node.socket}")
    for path in (layout.state_file, layout.client_config):
        if os.path.exists(path):
            os.unlink(path)
            done.append(f"removed stale {path}")
    shutil.rmtree(layout.etcd_data_dir, ignore_errors=True)
    return done


def _report_error(line: str, layout: Layout) -> VineyardRuntimeError:
    """Turn the supervisor's ``ERROR <Class> <message>`` line into that exception."""
    if not line.startswith("ERROR "):
        return ClusterStartError(
            "the supervisor exited before the cluster was ready; "
            f"{layout.supervisor_log} ends with:\n{log_tail(layout.supervisor_log)}"
        )
    name, _, message = line[len("ERROR "):].partition(" ")
    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, VineyardRuntimeError)):
        kind, message = ClusterStartError, f"{name} {message}"
    return kind(message.replace(" | ", "\n"))


class LocalCluster:
    """One etcd and N vineyardd "nodes" on this machine, supervised in the background.

    ``with LocalCluster(nodes=3, size="1Gi") as c: ...`` starts a cluster for the block; ``LocalCluster.attach(workdir)`` reaches one that
    ``fluidv cluster up`` started.
    """

    def __init__(
        self,
        nodes: int = 3,
        size: str = "1Gi",
        zones: list[str] | tuple[str, ...] | None = None,
        workdir: str | None = None,
        *,
        spill_path: str | None = None,
        compression: bool = False,
        reserve_memory: bool = False,
        etcd_port: int | None = None,
        rpc_port: int | None = None,
        start_timeout: float = 60.0,
        unresponsive_grace: float = 30.0,
        group: str | None = None,
    ) -> None:
        self.config = ClusterConfig(
            workdir=os.path.abspath(workdir or default_workdir()),
            nodes=nodes,
            size=size,
            zones=tuple(zones) if zones is not None else None,
            spill_path=spill_path,
            compression=compression,
            reserve_memory=reserve_memory,
            etcd_port=etcd_port,
            rpc_port=rpc_port,
            start_timeout=start_timeout,
            unresponsive_grace=unresponsive_grace,
            group=group,
        )
        self.layout = Layout(self.config.workdir)
        self._supervisor: subprocess.Popen[bytes] | None = None
        self.cleaned: list[str] = []

    # -- construction --------------------------------------------------------------

    @classmethod
    def attach(cls, workdir: str | None = None) -> "LocalCluster":
        """The cluster running in ``workdir``; ClusterNotRunning when there is none."""
        layout = Layout(os.path.abspath(workdir or default_workdir()))
        state = read_state(layout) if is_running(layout.workdir) else None
        if state is None:
            raise ClusterNotRunning(
                f"no cluster runs in {layout.workdir}; start one with `fluidv cluster up`"
            )
        cluster = cls.__new__(cls)
        cluster.config = ClusterConfig(
            workdir=layout.workdir,
            nodes=len(state.nodes),
            size=state.nodes[0].size,
            zones=tuple(n.labels.get("topology.kubernetes.io/zone", "") for n in state.nodes),
            compression=state.compression,
        )
        cluster.layout = layout
        cluster._supervisor = None
        cluster.cleaned = []
        return cluster

    # -- lifecycle -----------------------------------------------------------------

    @property
    def workdir(self) -> str:
        return self.layout.workdir

    def running(self) -> bool:
        """True when this cluster's supervisor is alive."""
        return is_running(self.workdir)

    def _dead_supervisor_lets_go(self, timeout: float = 5.0) -> bool:
        """True when the lock's holder is a supervisor that died: a killed multi-threaded
        process shows as a zombie while its last threads still exit holding its files
        (the lock), for a moment that grows with the machine's load."""
        state = read_state(self.layout)
        pid = state.supervisor_pid if state is not None else None
        if not pid or is_alive(pid):
            return False
        return wait_until(lambda: not self.running(), timeout) is not None

    def start(self, *, detach: bool = False) -> "LocalCluster":
        """Start the cluster and return once every node is ready.

        With ``detach`` the supervisor outlives this process (``fluidv cluster up``);
        otherwise it stops when this process dies. Raises ClusterAlreadyRunning,
        PortInUse, WorkdirError or ClusterStartError; on error nothing is left running.
        """
        if self.running() and not self._dead_supervisor_lets_go():
            raise self._already_running()
        self.layout.prepare(self.config.access)
        self.cleaned = clean_stale(self.workdir)
        if self.config.etcd_port is not None:
            require_free(self.config.etcd_port, flag="--etcd-port")
        if self.config.rpc_port is not None:
            for i in range(self.config.nodes):
                require_free(self.config.rpc_port + i, flag="--rpc-port")
        argv = [
            sys.executable, "-m", "vineyard_runtime.local.supervisor",
            json.dumps(self.config.to_dict()),
        ]
        proc = spawn(
            argv,
            log_path=self.layout.supervisor_log,
            stdout=subprocess.PIPE,
            die_with_parent=not detach,
            new_session=detach,
        )
        self._supervisor = proc
        line = self._await_report(proc)
        if line == "READY":
            return self
        proc.wait(timeout=STOP_TIMEOUT)
        self._supervisor = None
        error = _report_error(line, self.layout)
        raise self._already_running() if isinstance(error, ClusterAlreadyRunning) else error

    def _already_running(self) -> ClusterAlreadyRunning:
        """Said in Python's terms (the CLI says it in its own)."""
        return ClusterAlreadyRunning(
            f"a cluster already runs in {self.workdir}; use it with LocalCluster.attach({self.workdir!r}), "
            "stop it with that one's stop() or `fluidv cluster down`, or give another workdir=")

    def _await_report(self, proc: subprocess.Popen[bytes]) -> str:
        assert proc.stdout is not None
        deadline = time.monotonic() + self.config.start_timeout + 15
        buffer = b""
        try:
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    proc.terminate()
                    return (
                        "ERROR ClusterStartError the cluster did not start in time; see "
                        + self.layout.supervisor_log
                    )
                ready, _, _ = select.select([proc.stdout], [], [], remaining)
                if ready:
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    buffer += chunk
        finally:
            proc.stdout.close()
        return buffer.decode(errors="replace").strip()

    def describe(self) -> str:
        """What a stop stops: ``etcd (pid 1) and 3 nodes (node-0 pid 2, ...) in W``."""
        state = read_state(self.layout)
        if state is None:
            return f"nothing (no cluster runs in {self.workdir})"
        nodes = ", ".join(f"{n.name} pid {n.pid or '-'}" for n in state.nodes)
        return (f"etcd (pid {state.etcd.pid or '-'}) and {len(state.nodes)} node(s) ({nodes}) "
                f"in {self.workdir}")

    def stop(self) -> None:
        """Stop every daemon, remove sockets; ClusterNotRunning when nothing runs. A
        daemon that does not end within a second of SIGTERM is killed (the supervisor's
        log says which)."""
        state = read_state(self.layout) if self.running() else None
        if state is None:
            self.cleaned = clean_stale(self.workdir)
            if self._supervisor is not None:
                self._supervisor.wait(timeout=STOP_TIMEOUT)
                self._supervisor = None
            raise ClusterNotRunning(f"no cluster runs in {self.workdir}")
        pid = state.supervisor_pid
        if pid and is_alive(pid):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        wait_until(lambda: not (self.running() or is_alive(pid)), STOP_TIMEOUT)
        if self._supervisor is not None:
            try:
                self._supervisor.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._supervisor.kill()
                self._supervisor.wait()
            self._supervisor = None
        if self.running() and pid:
            terminate([pid], timeout=1)
        self.cleaned = clean_stale(self.workdir)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        except ClusterNotRunning:
            pass

    # -- inspection ----------------------------------------------------------------

    @property
    def state(self) -> ClusterState:
        """The recorded description of the running cluster."""
        state = read_state(self.layout)
        if state is None:
            raise ClusterNotRunning(
                f"no cluster runs in {self.workdir}; start one with `fluidv cluster up`"
            )
        return state

    @property
    def nodes(self) -> list[NodeState]:
        """The nodes, in order: name, labels, socket, RPC endpoint, pid, instance id."""
        return self.state.nodes

    @property
    def etcd_endpoint(self) -> str:
        return self.state.etcd.endpoint

    @property
    def etcd_prefix(self) -> str:
        """Where in etcd the cluster keeps its names and vineyardd its metadata."""
        return self.state.etcd_prefix

    def node(self, name: str) -> NodeState:
        return self.state.node(name)

    def client(self, node: str | int = 0) -> Any:
        """vineyard's own IPC client of ``node`` (a name such as ``"node-1"`` or an index),
        for code written against vineyard's API; it needs the ``vineyard`` extra
        (VineyardClientMissing says how to install it)."""
        target = self.nodes[node] if isinstance(node, int) else self.node(node)
        return connect_vineyard(target.socket, node=target.name)

    def status(self) -> list[NodeStatus]:
        """Each node's health, memory and object count."""
        return collect_status(self.state)
