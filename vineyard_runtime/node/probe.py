"""Checks of a node's health (its socket, a protocol connection, its etcd registration),
and vineyard's own client (the ``vineyard`` extra), imported only here."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from vineyard_runtime.plumbing.ports import socket_accepts
from vineyard_runtime.errors import IPCUnavailable, NodeUnavailable, VineyardClientMissing, VineyardRuntimeError
from vineyard_runtime.node.ipc import VineyardIPC
from vineyard_runtime.etcd_client import EtcdClient
from vineyard_runtime.spec import ROOT_SESSION


class Pinger:
    """Asks a vineyardd over its socket for its status (:class:`VineyardIPC`, which never
    holds the GIL while it waits): ``ping()`` is True when it answered within ``timeout``.
    The connection is kept between pings and opened again after a failure."""

    def __init__(self, path: str, timeout: float = 2.0) -> None:
        self.path, self.timeout = path, timeout
        self._ipc: VineyardIPC | None = None
        #: the instance id the daemon gave when this pinger last registered
        self.instance_id: int | None = None

    def ping(self) -> bool:
        try:
            if self._ipc is None:
                self._ipc = VineyardIPC(self.path, timeout=self.timeout)
                self.instance_id = self._ipc.instance_id
            self._ipc.instance_status()
            return True
        except VineyardRuntimeError:
            self.close()
            return False

    def close(self) -> None:
        if self._ipc is not None:
            self._ipc.close()
            self._ipc = None


def _listening(path: str, node: str | None) -> str:
    """Who listens at ``path`` (for messages); NodeUnavailable at once when nothing does."""
    who = f"node {node!r}" if node else "vineyardd"
    if not socket_accepts(path):
        state = "is missing" if not os.path.exists(path) else "does not accept connections"
        raise NodeUnavailable(
            f"{who} is not available: socket {path} {state}; "
            "start the cluster with `fluidv cluster up` (or check `fluidv cluster status`)"
        )
    return who


def connect_ipc(path: str, *, node: str | None = None, timeout: float | None = None) -> VineyardIPC:
    """A protocol connection to the vineyardd at ``path`` (calls end after ``timeout``).

    Fails at once with NodeUnavailable when nothing listens there, or the daemon refuses
    the connection.
    """
    who = _listening(path, node)
    try:
        return VineyardIPC(path, timeout=timeout)
    except IPCUnavailable as exc:
        raise NodeUnavailable(f"{who} at {path} refused the connection: {exc}") from exc


def connect_vineyard(path: str, *, node: str | None = None) -> Any:
    """vineyard's own Python client of the vineyardd at ``path`` (the ``vineyard`` extra),
    failing at once like :func:`connect_ipc` (vineyard's client would retry for about
    11 s, and a bare ``vineyard.connect()`` would silently spawn a private daemon)."""
    who = _listening(path, node)
    try:
        return connect_once(path)
    except VineyardClientMissing:
        raise
    except Exception as exc:  # vineyard raises its own hierarchy; report it as ours
        raise NodeUnavailable(f"{who} at {path} refused the connection: {exc}") from exc


_NO_RETRY = {"VINEYARD_IPC_SKIP_RETRY": "1", "VINEYARD_RPC_SKIP_RETRY": "1"}
_connecting = 0
_saved: dict[str, str | None] = {}
_connecting_lock = threading.Lock()


@contextlib.contextmanager
def _retries_off() -> Iterator[None]:
    """vineyard's no-retry variables, set while at least one connect runs in this process
    and restored after the last (connects never wait for each other: a stopped node's
    connect must not hold up the others)."""
    global _connecting
    with _connecting_lock:
        if _connecting == 0:
            _saved.update({key: os.environ.get(key) for key in _NO_RETRY})
            os.environ.update(_NO_RETRY)
        _connecting += 1
    try:
        yield
    finally:
        with _connecting_lock:
            _connecting -= 1
            if _connecting == 0:
                for key, value in _saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value


#: The warning vineyard 0.24.2's import prints on stderr (its deploy module imports
#: setuptools' deprecated pkg_resources): silenced where vineyard is imported, and only it.
PKG_RESOURCES_WARNING = "pkg_resources is deprecated as an API"
_PYTHON = f"CPython {platform.python_version()}"


def loaded_vineyard() -> Any:
    """The ``vineyard`` module when its client is imported, else None (``import vineyard``
    also finds the bare ``vineyard/bdist`` folder of the vineyard-bdist wheel)."""
    vineyard = sys.modules.get("vineyard")
    return vineyard if hasattr(vineyard, "connect") else None


def import_vineyard() -> Any:
    """The ``vineyard`` module (the ``vineyard`` extra); its first import (about 1 s) runs
    without the warning above. VineyardClientMissing, saying how to install it, when
    only vineyard-bdist (the daemon) is installed."""
    if "vineyard" not in sys.modules:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=PKG_RESOURCES_WARNING, category=UserWarning)
            try:
                import vineyard  # noqa: PLC0415 - slow import, only when a client is needed
            except ImportError:
                pass
    vineyard = loaded_vineyard()
    if vineyard is None:
        raise VineyardClientMissing(
            "this needs vineyard's own Python client (objects written by a client of Vineyard's own, "
            "Vineyard's RPC and migration): install it with `pip install 'fluid-vineyard[vineyard]'`; "
            f"vineyard 0.24.2 has wheels for CPython 3.8 to 3.12 only, and this is {_PYTHON}"
        )
    return vineyard


def connect_once(*address: Any) -> Any:
    """``vineyard.connect(*address)`` with its retries off (by default it retries for 11 s)."""
    vineyard = import_vineyard()
    with _retries_off():
        return vineyard.connect(*address)


def instance_records(etcd: EtcdClient, prefix: str) -> dict[int, dict[str, Any]]:
    """The fields (``nodename``, ``rpc_endpoint``, …) of every vineyardd registration in
    etcd under ``prefix``, by instance id: vineyardd's own layout, read here only."""
    base = f"{prefix.rstrip('/')}/{ROOT_SESSION}/instances/"
    records: dict[int, dict[str, Any]] = {}
    for key, value in etcd.get_prefix(base).items():
        ident, _, field = key[len(base):].partition("/")
        if ident.startswith("i") and ident[1:].isdigit() and field:
            try:
                records.setdefault(int(ident[1:]), {})[field] = json.loads(value)
            except ValueError:
                continue
    return records


def registered_instances(etcd: EtcdClient, prefix: str) -> dict[int, str]:
    """Instance id -> node name of every vineyardd registered in etcd under ``prefix``."""
    return {iid: str(fields["nodename"]) for iid, fields in instance_records(etcd, prefix).items()
            if "nodename" in fields}


def vineyard_errors(*names: str) -> tuple[type[BaseException], ...]:
    """vineyard's exception classes ``names``, or none while vineyard is not imported
    (nothing can have raised them then): for ``except`` clauses that must not import it."""
    vineyard = loaded_vineyard()
    return tuple(getattr(vineyard, name) for name in names) if vineyard is not None else ()
