"""vineyard's own Python client (the ``vineyard`` extra), for what the project's protocol
client does not do: objects that a client of Vineyard's own wrote, Vineyard's RPC and its
migration. Imported at first use; its absence is :class:`VineyardClientMissing`, saying
how to install it."""

from __future__ import annotations

from typing import Any

from objects.errors import VineyardClientMissing
from vineyard_runtime import errors as runtime_errors
from vineyard_runtime.node import probe


def import_vineyard() -> Any:
    """The ``vineyard`` module (its first import takes about a second)."""
    try:
        return probe.import_vineyard()
    except runtime_errors.VineyardClientMissing as exc:
        raise VineyardClientMissing(str(exc)) from None


def connect_once(*address: Any) -> Any:
    """``vineyard.connect(*address)``, without vineyard's retries."""
    import_vineyard()
    return probe.connect_once(*address)


vineyard_errors = probe.vineyard_errors
loaded_vineyard = probe.loaded_vineyard

__all__ = ["connect_once", "import_vineyard", "loaded_vineyard", "vineyard_errors"]
