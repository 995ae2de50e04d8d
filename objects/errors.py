"""Errors of the object layer; every one derives from :class:`ObjectsError`."""

from __future__ import annotations

from vineyard_runtime import errors as runtime_errors


class ObjectsError(Exception):
    """Base of every error raised by ``objects``."""


class StoreUnavailable(ObjectsError):
    """No Vineyard node could be reached; the message lists what was tried."""


class NodeUnavailable(StoreUnavailable, runtime_errors.NodeUnavailable):
    """A node did not answer a call within its deadline (``$FLUIDV_NODE_TIMEOUT``)."""


class InvalidName(ObjectsError, ValueError):
    """A new object's name breaks the naming rule (:mod:`objects.names`)."""


class ObjectNotFound(ObjectsError, KeyError):
    """No object has this name or id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ObjectExists(ObjectsError):
    """The name is taken and ``replace=True`` was not given."""


class StoreFull(ObjectsError):
    """The node cannot hold the requested bytes; nothing was moved elsewhere."""


class UnsupportedType(ObjectsError, TypeError):
    """The value's type has no zero-copy adaptor (and pickling was not allowed)."""


class StreamFailed(ObjectsError):
    """The producer of a stream failed or vanished before closing it."""
