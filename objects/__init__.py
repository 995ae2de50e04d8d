"""Arrow-based object adaptors over Vineyard's nodes, through the project's own client of
vineyardd's protocol (:mod:`objects.ipc`).

``objects.connect()`` reaches one Vineyard node; the returned store puts and gets
numpy arrays, Arrow data, pandas frames, torch CPU tensors and nested structures of
them, reading numeric buffers in place from shared memory.
"""

from __future__ import annotations

from objects.codecs.registry import register, unregister
from objects.connection import candidate_targets, connect_first
from objects.directory import open_directory
from objects.ipc import VineyardIPC
from objects.errors import (
    InvalidName,
    NodeUnavailable,
    ObjectExists,
    ObjectNotFound,
    ObjectsError,
    StoreFull,
    StoreUnavailable,
    StreamFailed,
    UnsupportedType,
    VineyardClientMissing,
)
from objects.names import check_name
from objects.refs import ObjectRef
from objects.store import ObjectStore


def connect(
    socket: str | None = None, *, endpoint: str | None = None, config: str | None = None,
    workdir: str | None = None, node: str | None = None,
) -> ObjectStore:
    """Connect to a Vineyard node.

    Resolution: the arguments (``socket``, ``endpoint``, ``config``, or the local
    cluster of ``workdir``), else ``$VINEYARD_IPC_SOCKET``, else ``$VINEYARD_CONFIG``
    (a ``vineyard-config.yaml``), else ``$VINEYARD_RPC_ENDPOINT``, else the local
    cluster running in ``$FLUIDV_HOME`` or ``./.fluidv``. ``node`` picks a node of a
    local cluster (``"node-1"``; node-0 by default). Raises StoreUnavailable at once,
    naming what was tried, when nothing answers; never spawns a daemon.
    """
    connection, target = connect_first(candidate_targets(socket, endpoint, config, workdir, node))
    if isinstance(connection, VineyardIPC):
        return ObjectStore(target, open_directory(target), ipc=connection)
    return ObjectStore(target, open_directory(target), client=connection)


__all__ = [
    "InvalidName",
    "NodeUnavailable",
    "ObjectExists",
    "ObjectNotFound",
    "ObjectRef",
    "ObjectStore",
    "ObjectsError",
    "StoreFull",
    "StoreUnavailable",
    "StreamFailed",
    "UnsupportedType",
    "VineyardClientMissing",
    "check_name",
    "connect",
    "register",
    "unregister",
]
