"""Find a Vineyard node and connect to it: never spawn a daemon, never sit in retries."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket as _socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from objects.errors import StoreUnavailable
from objects.ipc import VineyardIPC
from vineyard_runtime.node import client_config
from objects.vineyard_client import connect_once
from vineyard_runtime.plumbing.deadline import node_timeout
from vineyard_runtime.spec import DEFAULT_ETCD_PREFIX
from vineyard_runtime.workdir import WORKDIR_ENV, client_config_path, default_workdir, resolve_workdir

IPC_ENV = "VINEYARD_IPC_SOCKET"
CONFIG_ENV = "VINEYARD_CONFIG"
RPC_ENV = "VINEYARD_RPC_ENDPOINT"

_log = logging.getLogger("objects.connection")


ETCD_ENV = "FLUIDV_ETCD_ENDPOINT"
ETCD_PREFIX_ENV = "FLUIDV_ETCD_PREFIX"


@dataclass(frozen=True)
class Target:
    """Where to connect: a Unix socket (IPC, zero copy) or host:port (RPC), and the
    cluster's etcd when the config that named it says (the object directory)."""

    kind: str  # "ipc" | "rpc"
    address: str
    source: str  # what named it: "argument", "$VINEYARD_IPC_SOCKET", ...
    etcd_endpoint: str | None = None
    etcd_prefix: str = DEFAULT_ETCD_PREFIX
    #: the targets tried before this one, each with why it was passed over (an RPC
    #: connection after the node's socket refused says why it is not zero-copy)
    passed_over: tuple[str, ...] = ()

    def directory_settings(self) -> tuple[str, str] | None:
        """(etcd endpoint, prefix) of the object directory: ``$FLUIDV_ETCD_ENDPOINT``,
        else the config that named this target, else the config published beside the
        socket; None when nothing says."""
        if os.environ.get(ETCD_ENV):
            return os.environ[ETCD_ENV], os.environ.get(ETCD_PREFIX_ENV) or DEFAULT_ETCD_PREFIX
        if self.etcd_endpoint:
            return self.etcd_endpoint, self.etcd_prefix
        published = self.published()
        if published is not None and published.etcd_endpoint:
            return published.etcd_endpoint, published.etcd_prefix
        return None

    def published(self) -> client_config.NodeConfig | None:
        """The config published beside the socket (of a link, then of its worker)."""
        if self.kind == "ipc":
            for socket in dict.fromkeys((self.address, os.path.realpath(self.address))):
                published = client_config.for_socket(socket)
                if published is not None and published.etcd_endpoint:
                    return published
        return None

    def blob_token(self) -> str | None:
        """What the cluster's blob servers ask of this node's readers (None: nothing)."""
        published = self.published()
        return None if published is None else published.blob_token

    def describe(self) -> str:
        passed = f"; passed over: {'; '.join(self.passed_over)}" if self.passed_over else ""
        return f"{self.kind.upper()} {self.address} (from {self.source}){passed}"


def _read_config(path: str, source: str) -> client_config.NodeConfig:
    try:
        with open(path) as handle:
            data = yaml.safe_load(handle) or {}
    except OSError as exc:
        raise StoreUnavailable(f"cannot read Vineyard config {path} ({source}): {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise StoreUnavailable(f"Vineyard config {path} ({source}) is not valid YAML: {exc}") from None
    return client_config.NodeConfig.from_mapping(data)


def _config_targets(path: str, source: str, node: str | None = None) -> list[Target]:
    config = _read_config(path, source)
    where = f"{source} {path}"
    socket = config.socket
    if socket and not os.path.isabs(socket):  # the bridge names the socket beside its config
        socket = os.path.join(os.path.dirname(os.path.abspath(path)), socket)
    if node is not None:
        socket = config.node_socket(node)
        if socket is None:
            known = ", ".join(name for name, _ in config.nodes) or "none"
            raise StoreUnavailable(f"{where} names no node {node!r} (its nodes: {known})")
    targets = [Target("ipc", socket, where)] if socket else []
    if node is None:
        targets += [Target("rpc", endpoint, where) for endpoint in config.rpc_endpoints]
    if not targets:
        raise StoreUnavailable(f"Vineyard config {path} ({source}) names neither IPCSocket nor RPCEndpoint")
    return [dataclasses.replace(t, etcd_endpoint=config.etcd_endpoint, etcd_prefix=config.etcd_prefix)
            for t in targets]


def _local_cluster_targets(workdir: str, source: str, node: str | None) -> list[Target]:
    path = client_config_path(workdir)
    if not os.path.exists(path):
        flag = f" --workdir {workdir}" if source == "argument workdir" else ""
        raise StoreUnavailable(f"no local cluster runs in {workdir} ({source}): start one with "
                               f"`fluidv cluster up{flag}`")
    return _config_targets(path, f"the local cluster of {source}", node)


def candidate_targets(socket: str | None, endpoint: str | None, config: str | None,
                      workdir: str | None = None, node: str | None = None) -> list[Target]:
    """The places to try, in order: arguments first, then the environment, then the
    local cluster of ``$FLUIDV_HOME`` or ``./.fluidv``."""
    if socket:
        return [Target("ipc", socket, "argument socket")]
    if endpoint:
        return [Target("rpc", endpoint, "argument endpoint")]
    if config:
        return _config_targets(config, "argument config", node)
    if workdir or node:
        where = resolve_workdir(workdir)
        return _local_cluster_targets(where, "argument workdir" if workdir else _default_source(), node)
    if os.environ.get(IPC_ENV):
        return [Target("ipc", os.environ[IPC_ENV], f"${IPC_ENV}")]
    if os.environ.get(CONFIG_ENV):
        return _config_targets(os.environ[CONFIG_ENV], f"${CONFIG_ENV}")
    if os.environ.get(RPC_ENV):
        return [Target("rpc", e.strip(), f"${RPC_ENV}") for e in os.environ[RPC_ENV].split(",") if e.strip()]
    if os.path.exists(client_config_path(default_workdir())):
        return _local_cluster_targets(default_workdir(), _default_source(), None)
    raise StoreUnavailable(
        "no Vineyard node given: pass a socket, endpoint, config or workdir, or set "
        f"${IPC_ENV}, ${CONFIG_ENV} or ${RPC_ENV}; and no local cluster runs in {default_workdir()} "
        f"({_default_source()}): start one with `fluidv cluster up`"
    )


def _default_source() -> str:
    return f"${WORKDIR_ENV}" if os.environ.get(WORKDIR_ENV) else "the default workdir ./.fluidv"


def _split_endpoint(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise StoreUnavailable(f"RPC endpoint {address!r} is not host:port")
    return host, int(port)


def reachable(target: Target, timeout: float = 1.0) -> str | None:
    """None when something answers at ``target``, else why not."""
    if target.kind == "ipc" and not os.path.exists(target.address):
        return "socket missing"
    family, address, refused = ((_socket.AF_UNIX, target.address, "socket does not accept connections ")
                                if target.kind == "ipc" else (_socket.AF_INET, _split_endpoint(target.address), ""))
    with _socket.socket(family, _socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            return f"{refused}({reason})" if refused else reason
    return None


#: vineyard shares one IPC connection per socket within a process, and closing any
#: client of it disconnects them all: connections are counted, the last close closes.
_open: dict[tuple[str, str], int] = {}
_open_lock = threading.Lock()


def release(target: Target, client: Any) -> None:
    """Close ``client`` unless another store of this process still uses its connection."""
    key = (target.kind, target.address)
    with _open_lock:
        left = _open.get(key, 1) - 1
        if left > 0:
            _open[key] = left
            return
        _open.pop(key, None)
    client.close()


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Point file descriptor 1 at /dev/null for the duration (C++ code writes there)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def open_client(target: Target) -> Any:
    """A vineyard client for a reachable target (vineyard is imported here, lazily)."""
    if target.kind == "ipc":
        client = connect_once(target.address)
    else:
        host, port = _split_endpoint(target.address)
        with quiet_stdout():  # vineyard prints a line about RDMA on the process's stdout
            client = connect_once(host, port)
    with _open_lock:
        _open[(target.kind, target.address)] = _open.get((target.kind, target.address), 0) + 1
    return client


def open_connection(target: Target) -> Any:
    """The connection a store of ``target`` starts with: the project's own to a node's
    socket (:mod:`objects.ipc`; no vineyard import), vineyard's RPC client otherwise."""
    if target.kind == "ipc":
        return VineyardIPC(target.address, timeout=node_timeout())
    return open_client(target)


def connect_first(targets: list[Target]) -> tuple[Any, Target]:
    """Connect to the first target that answers (``open_connection``); StoreUnavailable
    listing every failure."""
    failures: list[str] = []
    for target in targets:
        problem = reachable(target)
        if problem is None:
            try:
                client = open_connection(target)
            except Exception as exc:  # noqa: BLE001 - vineyard's own exceptions, reported as ours
                problem = f"refused: {exc}"
            else:
                if failures:
                    _log.warning("connected to %s after passing over %s", target.describe(), "; ".join(failures))
                return client, dataclasses.replace(target, passed_over=tuple(failures))
        failures.append(f"{target.describe()}: {problem}")
    raise StoreUnavailable(
        "no Vineyard node answers; tried " + "; ".join(failures)
        + ". Start a local cluster with `fluidv cluster up` or check the address."
    )
