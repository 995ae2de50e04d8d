"""The project's client of vineyardd's IPC protocol (:mod:`vineyard_runtime.node.ipc`),
raising the errors of ``objects``."""

from __future__ import annotations

from objects.errors import ObjectNotFound, ObjectsError, StoreFull, StoreUnavailable
from vineyard_runtime.node import ipc as protocol
from vineyard_runtime.node.ipc import EMPTY_BLOB


class Unanswered(StoreUnavailable):
    """vineyardd did not answer within the connection's timeout (the connection is closed)."""


class VineyardIPC(protocol.VineyardIPC):
    """A store's connection to its node's vineyardd."""

    not_found = ObjectNotFound
    out_of_memory = StoreFull
    unavailable = StoreUnavailable
    unanswered = Unanswered
    refused = ObjectsError


__all__ = ["EMPTY_BLOB", "Unanswered", "VineyardIPC"]
