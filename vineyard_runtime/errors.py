"""Errors raised by the Vineyard runtime; each message says what to do next."""

from __future__ import annotations


class VineyardRuntimeError(Exception):
    """Base of every error of the Vineyard runtime."""


class InvalidSpec(VineyardRuntimeError, ValueError):
    """A size, count, port or other setting is not acceptable."""


class WorkdirError(VineyardRuntimeError):
    """The working directory cannot be created or written."""


class PortInUse(VineyardRuntimeError):
    """A port asked for explicitly is already taken on 127.0.0.1."""


class ClusterAlreadyRunning(VineyardRuntimeError):
    """A local cluster already runs in this working directory."""


class ClusterNotRunning(VineyardRuntimeError):
    """No local cluster runs in this working directory."""


class ClusterStartError(VineyardRuntimeError):
    """A daemon of the local cluster did not come up; nothing is left running."""


class NodeUnavailable(VineyardRuntimeError):
    """A node's vineyardd does not answer on its socket."""


class ObjectNotExists(VineyardRuntimeError):
    """A blob or object asked of a node is not on it (deleted, or the node restarted)."""


class OutOfMemory(VineyardRuntimeError):
    """A node has no room for a blob asked of it."""


class IPCUnavailable(NodeUnavailable):
    """The connection to a node's vineyardd is gone or was refused."""


class IPCUnanswered(IPCUnavailable):
    """A node's vineyardd did not answer within the connection's timeout."""


class IPCRefused(VineyardRuntimeError):
    """A node's vineyardd refused a request (its code and message say why)."""


class VineyardClientMissing(VineyardRuntimeError, ImportError):
    """vineyard's own Python client (the ``vineyard`` extra) is needed and not installed."""
