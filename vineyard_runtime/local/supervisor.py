"""The supervisor of a local cluster: starts etcd and the nodes, keeps them alive.

It runs as its own process (``python -m vineyard_runtime.local.supervisor``),
holds an exclusive lock on ``<workdir>/supervisor.lock`` while it lives, writes
``cluster.yaml`` whenever something changes, and tells its starter on stdout
whether the cluster came up (``READY``) or not (``ERROR <message>``).

Every daemon it starts dies with it (PR_SET_PDEATHSIG), and is started from the
main thread for that reason.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO

from vineyard_runtime import node_config
from vineyard_runtime.blob_server import BlobServer, endpoint_key
from vineyard_runtime.sweeper import NodeSweeper
from vineyard_runtime.binaries import etcd_binary, vineyardd_binary
from vineyard_runtime.daemons import etcd_command, vineyardd_command
from vineyard_runtime.errors import ClusterAlreadyRunning, ClusterStartError, VineyardRuntimeError
from vineyard_runtime.etcd_client import EtcdClient
from vineyard_runtime.local.config import ClusterConfig
from vineyard_runtime.local.layout import Layout
from vineyard_runtime.local.plan import pick_ports, plan_cluster
from vineyard_runtime.probe import Pinger, connect_ipc, registered_instances
from vineyard_runtime.processes import log_tail, spawn
from vineyard_runtime.local.state import ClusterState, NodeState, write_state
from vineyard_runtime.ports import LOOPBACK, socket_accepts
from vineyard_runtime.restarts import Backoff
from vineyard_runtime.spec import EtcdSpec, WorkerSpec
from vineyard_runtime.waiting import wait_until

log = logging.getLogger("fluidv.supervisor")

TICK = 0.2
LIVENESS_EVERY = 1.0
#: seconds without an answer before a running node is reported Unresponsive
UNRESPONSIVE_AFTER = 5.0
REGISTRATION_CHECK_EVERY = 1.0
MAX_EVENTS = 50


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class _Daemon:
    """A supervised process and when it may be restarted."""

    proc: subprocess.Popen[bytes] | None = None
    backoff: Backoff = field(default_factory=Backoff)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


class _WriteProbe:
    """Persists and deletes a tiny object on one node, in a thread.

    After etcd restarts, vineyardd answers reads at once but blocks metadata writes
    (and fails migrations) until its own etcd client reconnects, about 20 s later;
    a completed write is the sign that the node is usable again.
    """

    def __init__(self, node: str, socket: str) -> None:
        self.node, self.socket = node, socket
        self.ok = False
        self.done = False
        threading.Thread(target=self._run, name=f"probe-{node}", daemon=True).start()

    def _run(self) -> None:
        try:
            import numpy as np  # noqa: PLC0415 - only the supervisor needs it, and rarely

            client = connect_ipc(self.socket, node=self.node)
            try:
                oid = client.put(np.zeros(1))
                client.persist(oid)
                client.delete(oid)
                self.ok = True
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - not reconnected yet; tried again next tick
            log.info("%s: write probe failed: %s", self.node, exc)
        finally:
            self.done = True


class _Liveness:
    """Pings one node every second, in a thread (``Pinger``: no vineyard call, which
    would keep the GIL if the node never answers); ``silent()`` is how long the node has
    not answered (a stopped vineyardd still accepts connections, so only an answer counts)."""

    def __init__(self, node: str, socket: str) -> None:
        self.node, self.socket = node, socket
        self.answered = time.monotonic()
        self._stop = threading.Event()
        threading.Thread(target=self._run, name=f"liveness-{node}", daemon=True).start()

    def silent(self) -> float:
        return time.monotonic() - self.answered

    def reset(self) -> None:
        self.answered = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        pinger = Pinger(self.socket, timeout=LIVENESS_EVERY)
        while not self._stop.wait(LIVENESS_EVERY):
            if pinger.ping():
                self.answered = time.monotonic()
        pinger.close()


class Supervisor:
    """Brings a local cluster up, keeps it up, and takes it down."""

    def __init__(self, config: ClusterConfig, report: int | None = None) -> None:
        self.config = config
        self.layout = Layout(config.workdir)
        self.report_fd = report
        self.stopping = False
        self.lock_handle: IO[str] | None = None
        self.etcd = _Daemon()
        self.nodes: dict[str, _Daemon] = {}
        self.state: ClusterState | None = None
        self.etcd_client: EtcdClient | None = None
        self._last_registration_check = 0.0
        #: nodes that have not yet reached etcd again since it restarted
        self.reconnecting: set[str] = set()
        self.probes: dict[str, _WriteProbe] = {}
        #: per node: serves its blobs to readers on other nodes (survives vineyardd restarts)
        self.blob_servers: dict[str, BlobServer] = {}
        self.sweepers: dict[str, NodeSweeper] = {}
        self.liveness: dict[str, _Liveness] = {}

    # -- lifecycle -----------------------------------------------------------------

    def run(self) -> int:
        """Start, supervise until SIGTERM/SIGINT, stop. Returns the exit code."""
        try:
            self._lock()
        except ClusterAlreadyRunning as exc:
            self._report(f"ERROR ClusterAlreadyRunning {exc}")
            return 3
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._start_all()
        except Exception as exc:  # report any failure to the starter, then clean up
            log.exception("start failed")
            if isinstance(exc, VineyardRuntimeError):
                self._report(f"ERROR {type(exc).__name__} {exc}")
            else:
                self._report(f"ERROR ClusterStartError {exc!r}")
            self._shutdown()
            return 1
        self._report("READY")
        try:
            while not self.stopping:
                self._tick()
                time.sleep(TICK)
        finally:
            self._shutdown()
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("received signal %d, stopping", signum)
        self.stopping = True

    def _lock(self) -> None:
        self.lock_handle = open(self.layout.lock_file, "a+")  # noqa: SIM115 - held while the cluster runs
        try:
            fcntl.flock(self.lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClusterAlreadyRunning(
                f"a cluster already runs in {self.layout.workdir}; "
                "stop it with `fluidv cluster down` or choose another --workdir"
            ) from None

    def _report(self, line: str) -> None:
        if self.report_fd is None:
            return
        try:
            os.write(self.report_fd, (line.replace("\n", " | ") + "\n").encode())
            os.close(self.report_fd)
        except OSError:
            pass
        self.report_fd = None

    # -- start ---------------------------------------------------------------------

    def _start_all(self) -> None:
        self.layout.prepare()
        shutil.rmtree(self.layout.etcd_data_dir, ignore_errors=True)
        self.state = plan_cluster(self.config, self.layout, pick_ports(self.config),
                                  supervisor_pid=os.getpid(), started_at=_now())
        self.etcd_client = EtcdClient(self.state.etcd.endpoint)
        self._save()
        deadline = time.monotonic() + self.config.start_timeout
        self._start_etcd(deadline)
        for node in self.state.nodes:
            if node.spill_path:
                os.makedirs(node.spill_path, exist_ok=True)
            self.nodes[node.name] = _Daemon()
            self._start_node(node, deadline, attempts=3)
        self._wait_all_see_all(deadline)
        self.state.phase = "Ready"
        self._event(f"cluster ready: {len(self.state.nodes)} node(s), etcd at {self.state.etcd.endpoint}")

    def _start_etcd(self, deadline: float) -> None:
        assert self.state is not None and self.etcd_client is not None
        etcd = self.state.etcd
        spec = EtcdSpec(
            name="fluidv",
            data_dir=etcd.data_dir,
            client_url=etcd.endpoint,
            peer_url=f"http://{LOOPBACK}:{etcd.peer_port}",
            no_fsync=True,
        )
        command = etcd_command(spec, binary=etcd_binary())
        self.etcd.proc = spawn(command.argv, env=command.env, log_path=etcd.log)
        self.etcd.backoff.started_now()
        etcd.pid = self.etcd.proc.pid
        client = self.etcd_client
        assert client is not None

        def healthy() -> bool:
            code = self.etcd.exited()
            if code is not None:
                raise ClusterStartError(
                    f"etcd exited with code {code} while starting; its log {etcd.log} ends with:\n"
                    + log_tail(etcd.log)
                )
            return client.healthy()

        if not wait_until(healthy, max(0.0, deadline - time.monotonic())):
            raise ClusterStartError(f"etcd did not become healthy in time; see {etcd.log}")
        self._save()

    def _worker_spec(self, node: NodeState) -> WorkerSpec:
        assert self.state is not None
        return WorkerSpec(
            size=node.size,
            socket=node.socket,
            etcd_endpoint=self.state.etcd.endpoint,
            etcd_prefix=self.state.etcd_prefix,
            rpc_port=node.rpc_port,
            spill_path=node.spill_path,
            compression=self.config.compression,
            reserve_memory=self.config.reserve_memory,
            node_name=node.name,
            host_name=LOOPBACK,
        )

    def _start_node(self, node: NodeState, deadline: float, attempts: int = 1) -> None:
        """Start one vineyardd and wait until it serves IPC and is registered in etcd."""
        for attempt in range(1, attempts + 1):
            try:
                self._start_node_once(node, deadline)
                return
            except ClusterStartError:
                if attempt == attempts or time.monotonic() > deadline:
                    raise
                log.warning("%s failed to start (attempt %d), retrying", node.name, attempt)

    def _start_node_once(self, node: NodeState, deadline: float) -> None:
        assert self.etcd_client is not None and self.state is not None
        daemon = self.nodes[node.name]
        if os.path.lexists(node.socket):
            os.unlink(node.socket)
        command = vineyardd_command(self._worker_spec(node), binary=vineyardd_binary())
        # SIGKILL: a vineyardd told to stop gracefully retries an etcd that is going away
        # for 11 s or more, and its memory dies with it anyway
        daemon.proc = spawn(command.argv, env=command.env, log_path=node.log, death_signal=signal.SIGKILL)
        daemon.backoff.started_now()
        node.pid = daemon.proc.pid
        node.instance_id = None
        while True:
            code = daemon.exited()
            if code is not None:
                raise ClusterStartError(
                    f"vineyardd of {node.name} exited with code {code} while starting; "
                    f"its log {node.log} ends with:\n{log_tail(node.log)}"
                )
            if time.monotonic() > deadline:
                raise ClusterStartError(
                    f"vineyardd of {node.name} did not become ready in time; see {node.log}"
                )
            if node.instance_id is None and socket_accepts(node.socket):
                client = connect_ipc(node.socket, node=node.name)
                node.instance_id = int(client.instance_id)
                client.close()
            if node.instance_id is not None:
                try:
                    if node.instance_id in registered_instances(self.etcd_client, self.state.etcd_prefix):
                        break
                except OSError:
                    pass
            time.sleep(0.05)
        server = self.blob_servers.get(node.name)
        if server is None:
            server = self.blob_servers[node.name] = BlobServer(node.socket, host=LOOPBACK).start()
        self.etcd_client.put(endpoint_key(self.state.etcd_prefix, node.instance_id), server.endpoint)
        if node.name in self.liveness:
            self.liveness[node.name].reset()
        else:
            self.liveness[node.name] = _Liveness(node.name, node.socket)
        if node.name not in self.sweepers:
            self.sweepers[node.name] = NodeSweeper(
                node.socket, self.state.etcd.endpoint, self.state.etcd_prefix,
                lambda: node.instance_id, connect_ipc).start()
        self.sweepers[node.name].announce(node.instance_id)
        node_config.write(node_config.sidecar_path(node.socket), node_config.NodeConfig(
            socket=node.socket, rpc_endpoints=(f"{LOOPBACK}:{node.rpc_port}",),
            etcd_endpoint=self.state.etcd.endpoint, etcd_prefix=self.state.etcd_prefix,
        ))
        self._save()

    def _wait_all_see_all(self, deadline: float) -> None:
        """Wait until every node's view of the cluster lists every node's instance."""
        assert self.state is not None
        expected = {n.instance_id for n in self.state.nodes}
        for node in self.state.nodes:
            client = connect_ipc(node.socket, node=node.name)
            try:
                while not expected <= set(client.meta):
                    if time.monotonic() > deadline:
                        raise ClusterStartError(
                            f"{node.name} does not see every node of the cluster in time "
                            f"(sees instances {sorted(client.meta)}, expected {sorted(map(str, expected))})"
                        )
                    time.sleep(0.05)
            finally:
                client.close()

    # -- supervision ---------------------------------------------------------------

    def _tick(self) -> None:
        assert self.state is not None and self.etcd_client is not None
        code = self.etcd.exited()
        if code is not None:
            delay = self.etcd.backoff.schedule()
            self._event(
                f"etcd (pid {self.state.etcd.pid}) exited with code {code}; restarting in {delay:.1f}s"
            )
            self.etcd.proc = None
            self.state.etcd.pid = None
            self.state.phase = "Degraded"
            self._save()
        if self.etcd.proc is None:
            if self.etcd.backoff.due():
                self._restart_etcd()
            return
        for node in self.state.nodes:
            daemon = self.nodes[node.name]
            code = daemon.exited()
            if code is not None:
                delay = daemon.backoff.schedule()
                self._event(
                    f"{node.name}: vineyardd (pid {node.pid}) exited with code {code}; "
                    f"restarting in {delay:.1f}s"
                )
                daemon.proc = None
                node.pid = None
                self.state.phase = "Degraded"
                self._save()
            if daemon.proc is None and daemon.backoff.due():
                self._restart_node(node)
        self._check_answering()
        if self.reconnecting:
            self._check_reconnected()
        if time.monotonic() - self._last_registration_check >= REGISTRATION_CHECK_EVERY:
            self._last_registration_check = time.monotonic()
            self._check_registrations()

    def _restart_etcd(self) -> None:
        assert self.state is not None
        try:
            self._start_etcd(time.monotonic() + 30)
        except ClusterStartError as exc:
            delay = self.etcd.backoff.schedule()
            self._event(f"etcd failed to restart ({exc}); next attempt in {delay:.1f}s")
            self.etcd.proc = None
            return
        self.state.etcd.restarts += 1
        self.reconnecting = {n.name for n in self.state.nodes}
        self._event(
            f"etcd restarted (pid {self.state.etcd.pid}); waiting for the workers to reconnect"
        )
        self._check_registrations()
        self._update_phase()

    def _check_reconnected(self) -> None:
        """Start a write probe per reconnecting node; clear the nodes whose probe passed."""
        assert self.state is not None
        for node in self.state.nodes:
            if node.name not in self.reconnecting or self.nodes[node.name].proc is None:
                continue
            probe = self.probes.get(node.name)
            if probe is None:
                probe = self.probes[node.name] = _WriteProbe(node.name, node.socket)
            elif probe.done:
                del self.probes[node.name]
                if probe.ok:
                    self.reconnecting.discard(node.name)
                    self._event(f"{node.name}: reconnected to etcd")
        self._update_phase()

    def _check_answering(self) -> None:
        """Report nodes that run but do not answer (SIGSTOP, a hang); past the grace
        period kill them, so that they restart and their clients fail instead of waiting."""
        assert self.state is not None
        for node in self.state.nodes:
            daemon, liveness = self.nodes[node.name], self.liveness.get(node.name)
            if daemon.proc is None or liveness is None:
                continue
            silent = liveness.silent()
            if silent < UNRESPONSIVE_AFTER:
                if node.unresponsive_since is not None:
                    node.unresponsive_since = None
                    self._event(f"{node.name}: vineyardd answers again")
                    self._update_phase()
                continue
            if node.unresponsive_since is None:
                node.unresponsive_since = _now()
                self._event(f"{node.name}: vineyardd (pid {node.pid}) does not answer; restarting it "
                            f"if it still does not in {self.config.unresponsive_grace:g}s")
                self._update_phase()
            if silent >= self.config.unresponsive_grace:
                self._event(f"{node.name}: vineyardd (pid {node.pid}) did not answer for {silent:.0f}s; "
                            "killed to restart it - objects it held are lost")
                daemon.proc.kill()  # also ends a stopped process; its exit restarts it next tick
                daemon.proc.wait()
                node.unresponsive_since = None
                liveness.reset()

    def _restart_node(self, node: NodeState) -> None:
        assert self.state is not None
        daemon = self.nodes[node.name]
        try:
            self._start_node(node, time.monotonic() + 30)
        except (ClusterStartError, VineyardRuntimeError, OSError) as exc:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()
            daemon.proc = None
            node.pid = None
            delay = daemon.backoff.schedule()
            self._event(f"{node.name}: restart failed ({exc}); next attempt in {delay:.1f}s")
            return
        node.restarts += 1
        self.reconnecting.discard(node.name)
        self._event(f"{node.name}: vineyardd restarted (pid {node.pid}, instance {node.instance_id})")
        self._update_phase()

    def _check_registrations(self) -> None:
        """Restart nodes whose registration vanished from etcd (etcd lost its data)."""
        assert self.state is not None and self.etcd_client is not None
        try:
            registered = registered_instances(self.etcd_client, self.state.etcd_prefix)
        except OSError:
            return
        for node in self.state.nodes:
            daemon = self.nodes[node.name]
            if daemon.proc is None or daemon.exited() is not None or node.instance_id in registered:
                continue
            self._event(
                f"{node.name}: instance {node.instance_id} is no longer registered in etcd "
                "(etcd lost its data); restarting vineyardd so it registers again - "
                "objects it held are lost"
            )
            daemon.proc.terminate()
            try:
                daemon.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.proc.kill()
                daemon.proc.wait()
            daemon.proc = None
            self._restart_node(node)

    def _update_phase(self) -> None:
        assert self.state is not None
        down = [n for n in self.state.nodes if self.nodes[n.name].proc is None or n.unresponsive_since]
        degraded = down or self.etcd.proc is None or self.reconnecting
        phase = "Degraded" if degraded else "Ready"
        if phase != self.state.phase:
            self.state.phase = phase
            self._save()

    def _event(self, message: str) -> None:
        assert self.state is not None
        log.info(message)
        self.state.events = (self.state.events + [{"time": _now(), "message": message}])[-MAX_EVENTS:]
        self._save()

    def _save(self) -> None:
        if self.state is not None:
            write_state(self.layout, self.state)

    # -- stop ----------------------------------------------------------------------

    def _shutdown(self) -> None:
        if self.state is not None:
            self.state.phase = "Stopping"
            self._save()
        for server in self.blob_servers.values():
            server.shutdown()
            server.server_close()
        for sweeper in self.sweepers.values():
            sweeper.stop()
        for liveness in self.liveness.values():
            liveness.stop()
        procs = [d.proc for d in self.nodes.values() if d.proc is not None]
        _stop_all(procs)
        if self.etcd.proc is not None:
            _stop_all([self.etcd.proc])
        if self.state is not None:
            for node in self.state.nodes:
                for path in (node.socket, node_config.sidecar_path(node.socket)):
                    if os.path.lexists(path):
                        os.unlink(path)
        socket_dir = self.layout.socket_dir
        if os.path.isdir(socket_dir) and not os.listdir(socket_dir):
            os.rmdir(socket_dir)
        shutil.rmtree(self.layout.etcd_data_dir, ignore_errors=True)
        if os.path.exists(self.layout.state_file):
            os.unlink(self.layout.state_file)
        log.info("cluster stopped")


def _stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m vineyard_runtime.local.supervisor '<config json>'``."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    config = ClusterConfig.from_dict(json.loads(args[0]))
    report = os.dup(sys.stdout.fileno())
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return Supervisor(config, report=report).run()


if __name__ == "__main__":
    sys.exit(main())
