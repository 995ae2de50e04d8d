"""Errors of the object layer; every one derives from :class:`ObjectsError`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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


class VineyardClientMissing(ObjectsError, runtime_errors.VineyardClientMissing):
    """vineyard's own Python client (the ``vineyard`` extra) is needed and not installed."""


class UnsupportedType(ObjectsError, TypeError):
    """The value's type has no zero-copy adaptor (and pickling was not allowed)."""


class StreamFailed(ObjectsError):
    """The producer of a stream failed or vanished before closing it."""


#: vineyard's exceptions (by class name: importing vineyard is slow) and what they mean here
_FROM_VINEYARD: dict[str, tuple[type[ObjectsError], str]] = {
    "ConnectionErrorException": (StoreUnavailable, "the connection to {node} is gone; connect again "
                                                   "(`objects.connect`) once the node answers"),
    "ConnectionFailedException": (StoreUnavailable, "{node} cannot be reached; connect again once it answers"),
    "VineyardServerNotReadyException": (StoreUnavailable, "{node} is not ready yet; try again shortly"),
    "NotEnoughMemoryException": (StoreFull, "{node} has no room for this; delete objects you no longer need "
                                            "or start the node with a larger size"),
    "ObjectNotExistsException": (ObjectNotFound, "the object is gone from {node}"),
    "MetaTreeSubtreeNotExistsException": (ObjectNotFound, "a part of the object is gone from {node}"),
    "ObjectExistsException": (ObjectExists, "the object already exists on {node}"),
}


@contextlib.contextmanager
def translated(node: str) -> Iterator[None]:
    """Raise what vineyard raises inside the block as the matching ``ObjectsError`` (the
    original is kept as ``__cause__``), so that callers catch one hierarchy."""
    try:
        yield
    except RuntimeError as exc:
        if type(exc).__module__ != "vineyard._C":
            raise
        kind, hint = _FROM_VINEYARD.get(type(exc).__name__, (ObjectsError, "{node} refused the call"))
        raise kind(f"{hint.format(node=node)} ({type(exc).__name__}: {str(exc).strip()})") from exc
