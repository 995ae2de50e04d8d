"""Checks of a node's health: its socket, an IPC connection, its etcd registration."""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from vineyard_runtime.errors import NodeUnavailable
from vineyard_runtime.etcd_client import EtcdClient
from vineyard_runtime.spec import ROOT_SESSION

_INSTANCE_KEY = re.compile(r"/instances/i(\d+)/")


def socket_accepts(path: str, timeout: float = 1.0) -> bool:
    """True when something accepts connections on the Unix socket ``path``."""
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def connect_ipc(path: str, *, node: str | None = None) -> Any:
    """An IPC client of the vineyardd at ``path``.

    Fails at once with NodeUnavailable when nothing listens there: vineyard's own
    client would retry for about 11 s, and a bare ``vineyard.connect()`` would
    silently spawn a private daemon.
    """
    who = f"node {node!r}" if node else "vineyardd"
    if not socket_accepts(path):
        state = "is missing" if not os.path.exists(path) else "does not accept connections"
        raise NodeUnavailable(
            f"{who} is not available: socket {path} {state}; "
            "start the cluster with `fluidv cluster up` (or check `fluidv cluster status`)"
        )
    os.environ["VINEYARD_IPC_SKIP_RETRY"] = "1"
    import vineyard  # noqa: PLC0415 - slow import, only when a client is needed

    try:
        return vineyard.connect(path)
    except Exception as exc:  # vineyard raises its own hierarchy; report it as ours
        raise NodeUnavailable(f"{who} at {path} refused the connection: {exc}") from exc


def registered_instances(etcd: EtcdClient, prefix: str) -> dict[int, str]:
    """Instance id -> node name of every vineyardd registered in etcd under ``prefix``."""
    base = f"{prefix.rstrip('/')}/{ROOT_SESSION}/instances/"
    found: dict[int, str] = {}
    for key, value in etcd.get_prefix(base).items():
        match = _INSTANCE_KEY.search(key)
        if match and key.endswith("/nodename"):
            found[int(match.group(1))] = value.strip('"')
    return found
