"""The supervisor of a local cluster: starts etcd and the nodes, keeps them alive.

It runs as its own process (``python -m vineyard_runtime.local.supervisor``),
holds an exclusive lock on ``<workdir>/supervisor.lock`` while it lives, writes
``cluster.yaml`` whenever something changes, and tells its starter on stdout
whether the cluster came up (``READY``) or not (``ERROR <message>``).

Every daemon it starts dies with it (PR_SET_PDEATHSIG), and is started from the
main thread for that reason. The rest lives in rooms of its own: the plan
(``plan.py``), each daemon and its restart backoff (``daemon.py``), the liveness
and reconnect probes (``health.py``) and what runs beside each node
(``node_services.py``); this module starts the daemons and runs the tick loop.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import signal
import sys
import time
from typing import IO

from vineyard_runtime.node import client_config
from vineyard_runtime.node.holds import holds_dir
from vineyard_runtime.binaries import etcd_binary, vineyardd_binary
from vineyard_runtime.daemons import etcd_command, vineyardd_command
from vineyard_runtime.errors import ClusterAlreadyRunning, ClusterStartError, VineyardRuntimeError
from vineyard_runtime.etcd_client import EtcdClient
from vineyard_runtime.local.config import ClusterConfig
from vineyard_runtime.local.daemon import Daemon, stop_all
from vineyard_runtime.local.health import Reconnects
from vineyard_runtime.local.layout import Layout
from vineyard_runtime.local.node_services import NodeServices
from vineyard_runtime.local.plan import pick_ports, plan_cluster
from vineyard_runtime.local.state import ClusterState, NodeState, write_state
from vineyard_runtime.plumbing.ports import ANY_ADDRESS, LOOPBACK, free_ports, socket_accepts
from vineyard_runtime.node.probe import connect_ipc, registered_instances
from vineyard_runtime.plumbing.processes import log_tail, spawn
from vineyard_runtime.spec import EtcdSpec, WorkerSpec
from vineyard_runtime.plumbing.waiting import wait_until

log = logging.getLogger("fluidv.supervisor")

TICK = 0.2
#: seconds without an answer before a running node is reported Unresponsive
UNRESPONSIVE_AFTER = 5.0
REGISTRATION_CHECK_EVERY = 1.0
#: seconds a daemon has after SIGTERM at shutdown before it is killed. Nothing of a
#: stopping cluster survives it (vineyardd keeps its objects in memory only, and etcd's
#: data is removed), and vineyardd now and then ignores SIGTERM while it stops its etcd
#: watch: waiting longer only makes ``cluster down`` slow.
SHUTDOWN_GRACE = 1.0


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Supervisor:
    """Brings a local cluster up, keeps it up, and takes it down."""

    def __init__(self, config: ClusterConfig, report: int | None = None) -> None:
        self.config = config
        self.layout = Layout(config.workdir)
        self.report_fd = report
        self.stopping = False
        self.lock_handle: IO[str] | None = None
        self.etcd = Daemon()
        self.nodes: dict[str, Daemon] = {}
        self.state: ClusterState | None = None
        self.etcd_client: EtcdClient | None = None
        self.services: NodeServices | None = None
        self._last_registration_check = 0.0
        #: nodes that have not yet reached etcd again since it restarted
        self.reconnects = Reconnects()

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
            raise ClusterAlreadyRunning(f"a cluster already runs in {self.layout.workdir}") from None

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
        self.layout.prepare(self.config.access)
        shutil.rmtree(self.layout.etcd_data_dir, ignore_errors=True)
        self.state = plan_cluster(self.config, self.layout, pick_ports(self.config),
                                  supervisor_pid=os.getpid(), started_at=_now())
        self.etcd_client = EtcdClient(self.state.etcd.endpoint)
        self.services = NodeServices(self.state, self.etcd_client)
        self._save()
        deadline = time.monotonic() + self.config.start_timeout
        self._start_etcd(deadline)
        for node in self.state.nodes:
            if node.spill_path:
                os.makedirs(node.spill_path, exist_ok=True)
            self.nodes[node.name] = Daemon()
            self._start_node(node, deadline, attempts=3)
        self._wait_all_see_all(deadline)
        assert self.services is not None
        self.services.publish(self.layout.client_config)
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
        proc = spawn(command.argv, env=command.env, log_path=etcd.log)
        self.etcd.started(proc)
        etcd.pid = proc.pid
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
            except ClusterStartError as error:
                if attempt == attempts or time.monotonic() > deadline:
                    raise
                log.warning("%s failed to start (attempt %d), retrying", node.name, attempt)
                if "Address already in use" in str(error) and self.config.rpc_port is None:
                    self._another_rpc_port(node)

    def _another_rpc_port(self, node: NodeState) -> None:
        """A free port for ``node``'s RPC in place of its planned one, which another
        process took between the plan and vineyardd's bind."""
        assert self.state is not None
        taken = {n.rpc_port for n in self.state.nodes} | {self.state.etcd.client_port, self.state.etcd.peer_port}
        (port,) = free_ports(1, host=ANY_ADDRESS, exclude=taken)
        log.warning("%s's RPC port %d was taken meanwhile: it gets port %d", node.name, node.rpc_port, port)
        node.rpc_port = port

    def _start_node_once(self, node: NodeState, deadline: float) -> None:
        assert self.etcd_client is not None and self.state is not None and self.services is not None
        daemon, client, prefix = self.nodes[node.name], self.etcd_client, self.state.etcd_prefix
        if os.path.lexists(node.socket):
            os.unlink(node.socket)
        command = vineyardd_command(self._worker_spec(node), binary=vineyardd_binary())
        # SIGKILL: a vineyardd told to stop gracefully retries an etcd that is going away
        # for 11 s or more, and its memory dies with it anyway
        daemon.started(spawn(command.argv, env=command.env, log_path=node.log, death_signal=signal.SIGKILL))
        assert daemon.proc is not None
        node.pid = daemon.proc.pid
        node.instance_id = None

        def registered() -> bool:
            code = daemon.exited()
            if code is not None:
                raise ClusterStartError(
                    f"vineyardd of {node.name} exited with code {code} while starting; "
                    f"its log {node.log} ends with:\n{log_tail(node.log)}"
                )
            if node.instance_id is None and socket_accepts(node.socket):
                with connect_ipc(node.socket, node=node.name) as ipc:
                    node.instance_id = ipc.instance_id
            try:
                return node.instance_id is not None and node.instance_id in registered_instances(client, prefix)
            except OSError:
                return False

        if not wait_until(registered, max(0.0, deadline - time.monotonic())):
            raise ClusterStartError(f"vineyardd of {node.name} did not become ready in time; see {node.log}")
        access = self.config.access  # vineyardd makes its socket srwxrwxrwx
        access.apply(node.socket, access.socket_mode)
        self.services.attach(node)
        self._save()

    def _wait_all_see_all(self, deadline: float) -> None:
        """Wait until every node's view of the cluster lists every node's instance."""
        assert self.state is not None
        expected = {n.instance_id for n in self.state.nodes}
        for node in self.state.nodes:
            with connect_ipc(node.socket, node=node.name) as ipc:
                if not wait_until(lambda: expected <= set(ipc.cluster_meta()), max(0.0, deadline - time.monotonic())):
                    raise ClusterStartError(
                        f"{node.name} does not see every node of the cluster in time "
                        f"(sees instances {sorted(ipc.cluster_meta())}, expected {sorted(map(str, expected))})"
                    )

    # -- supervision ---------------------------------------------------------------

    def _tick(self) -> None:
        assert self.state is not None and self.etcd_client is not None
        ended = self.etcd.reap()
        if ended is not None:
            self._event(f"etcd (pid {self.state.etcd.pid}) exited with code {ended[0]}; "
                        f"restarting in {ended[1]:.1f}s")
            self.state.etcd.pid = None
            self._update_phase()
        if not self.etcd.up:
            if self.etcd.restart_due():
                self._restart_etcd()
            return
        for node in self.state.nodes:
            daemon = self.nodes[node.name]
            ended = daemon.reap()
            if ended is not None:
                self._event(f"{node.name}: vineyardd (pid {node.pid}) exited with code {ended[0]}; "
                            f"restarting in {ended[1]:.1f}s")
                node.pid = None
                self._update_phase()
            if daemon.restart_due():
                self._restart_node(node)
        self._check_answering()
        if self.reconnects:
            self._check_reconnected()
        if time.monotonic() - self._last_registration_check >= REGISTRATION_CHECK_EVERY:
            self._last_registration_check = time.monotonic()
            self._check_registrations()

    def _restart_etcd(self) -> None:
        assert self.state is not None
        try:
            self._start_etcd(time.monotonic() + 30)
        except ClusterStartError as exc:
            delay = self.etcd.failed()
            self._event(f"etcd failed to restart ({exc}); next attempt in {delay:.1f}s")
            return
        self.state.etcd.restarts += 1
        self.reconnects.begin(n.name for n in self.state.nodes)
        self._event(
            f"etcd restarted (pid {self.state.etcd.pid}); waiting for the workers to reconnect"
        )
        self._check_registrations()
        self._update_phase()

    def _check_reconnected(self) -> None:
        """Probe the reconnecting nodes that run; say which reached etcd again."""
        assert self.state is not None
        running = {n.name: n.socket for n in self.state.nodes if self.nodes[n.name].up}
        for name in self.reconnects.check(running):
            self._event(f"{name}: reconnected to etcd")
        self._update_phase()

    def _check_answering(self) -> None:
        """Report nodes that run but do not answer (SIGSTOP, a hang); past the grace
        period kill them, so that they restart and their clients fail instead of waiting."""
        assert self.state is not None and self.services is not None
        for node in self.state.nodes:
            daemon, silent = self.nodes[node.name], self.services.silent(node.name)
            if not daemon.up or silent is None:
                continue
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
                daemon.end()  # also ends a stopped process; its exit restarts it next tick
                node.unresponsive_since = None
                self.services.answered(node.name)

    def _restart_node(self, node: NodeState) -> None:
        assert self.state is not None
        daemon = self.nodes[node.name]
        try:
            self._start_node(node, time.monotonic() + 30)
        except (ClusterStartError, VineyardRuntimeError, OSError) as exc:
            delay = daemon.failed()
            node.pid = None
            self._event(f"{node.name}: restart failed ({exc}); next attempt in {delay:.1f}s")
            return
        node.restarts += 1
        self.reconnects.discard(node.name)
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
            if not daemon.up or daemon.exited() is not None or node.instance_id in registered:
                continue
            self._event(
                f"{node.name}: instance {node.instance_id} is no longer registered in etcd "
                "(etcd lost its data); restarting vineyardd so it registers again - "
                "objects it held are lost"
            )
            daemon.stop(timeout=10)
            self._restart_node(node)

    def _update_phase(self) -> None:
        assert self.state is not None
        down = [n for n in self.state.nodes if not self.nodes[n.name].up or n.unresponsive_since]
        degraded = down or not self.etcd.up or self.reconnects
        phase = "Degraded" if degraded else "Ready"
        if phase != self.state.phase:
            self.state.phase = phase
            self._save()

    def _event(self, message: str) -> None:
        assert self.state is not None
        log.info(message)
        self.state.record(_now(), message)
        self._save()

    def _save(self) -> None:
        if self.state is not None:
            write_state(self.layout, self.state)

    # -- stop ----------------------------------------------------------------------

    def _shutdown(self) -> None:
        if self.state is not None:
            self.state.phase = "Stopping"
            self._save()
        if self.services is not None:
            self.services.close()
        names = {d.proc.pid: name for name, d in self.nodes.items() if d.proc is not None}
        log.info("stopping %s", ", ".join(f"{name} (pid {pid})" for pid, name in names.items()) or "no node")
        for pid in stop_all(list(self.nodes.values()), SHUTDOWN_GRACE):
            log.info("%s (pid %d) did not stop within %.1fs of SIGTERM: killed", names[pid], pid, SHUTDOWN_GRACE)
        if self.etcd.proc is not None:
            pid = self.etcd.proc.pid
            log.info("stopping etcd (pid %d)", pid)
            if self.etcd.stop(SHUTDOWN_GRACE):
                log.info("etcd (pid %d) did not stop within %.1fs of SIGTERM: killed", pid, SHUTDOWN_GRACE)
        if self.state is not None:
            for node in self.state.nodes:  # the readers' holds pinned what the stopped node held
                shutil.rmtree(holds_dir(node.socket), ignore_errors=True)
                for path in (node.socket, client_config.sidecar_path(node.socket)):
                    if os.path.lexists(path):
                        os.unlink(path)
        if os.path.exists(self.layout.client_config):
            os.unlink(self.layout.client_config)
        socket_dir = self.layout.socket_dir
        if os.path.isdir(socket_dir) and not os.listdir(socket_dir):
            os.rmdir(socket_dir)
        shutil.rmtree(self.layout.etcd_data_dir, ignore_errors=True)
        if os.path.exists(self.layout.state_file):
            os.unlink(self.layout.state_file)
        log.info("cluster stopped")


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m vineyard_runtime.local.supervisor '<config json>'``."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    config = ClusterConfig.from_dict(json.loads(args[0]))
    os.umask(config.access.umask)  # what it and its daemons create: no access beyond the config's
    report = os.dup(sys.stdout.fileno())
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return Supervisor(config, report=report).run()


if __name__ == "__main__":
    sys.exit(main())
