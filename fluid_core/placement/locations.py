"""Where a cluster keeps each named object, read from its object directory in etcd.

The directory (``objects.directory``) keeps one JSON entry per name under
``<prefix>/fluidv/names/<name>``; an entry names the node that holds the object
(``node``) and its size (``nbytes``). Reading it is one range request, whatever the
number of objects, and never touches Vineyard's own metadata.
"""

from __future__ import annotations

import json
from typing import Any
from collections.abc import Mapping

from vineyard_runtime.spec import DEFAULT_ETCD_PREFIX, NAMES_PREFIX


def _names_prefix(etcd_prefix: str) -> str:
    return f"{etcd_prefix.rstrip('/')}/{NAMES_PREFIX}"


def _entries(kv: Mapping[str, str], etcd_prefix: str) -> dict[str, dict[str, Any]]:
    base = _names_prefix(etcd_prefix)
    entries = {}
    for key, raw in kv.items():
        if not key.startswith(base):
            continue
        try:
            entries[key[len(base):]] = json.loads(raw)
        except ValueError:
            continue  # not an entry of this version: skip it
    return entries


def object_locations(kv: Mapping[str, str], etcd_prefix: str = DEFAULT_ETCD_PREFIX) -> dict[str, dict[str, int]]:
    """``{name: {node: nbytes}}`` of every named object in the key-values of a
    cluster's object directory (as returned for its names prefix)."""
    return {name: {str(entry["node"]): int(entry.get("nbytes", 0))}
            for name, entry in _entries(kv, etcd_prefix).items() if "node" in entry}


def _read(etcd_endpoint: str, etcd_prefix: str, timeout: float) -> dict[str, str]:
    from vineyard_runtime.etcd_client import EtcdClient  # noqa: PLC0415

    return EtcdClient(etcd_endpoint, timeout=timeout).get_prefix(_names_prefix(etcd_prefix))


def read_directory(etcd_endpoint: str, timeout: float = 2.0, etcd_prefix: str = DEFAULT_ETCD_PREFIX,
                   ) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """``object_locations`` and ``named_ids`` of the cluster at ``etcd_endpoint``, in one read."""
    kv = _read(etcd_endpoint, etcd_prefix, timeout)
    return object_locations(kv, etcd_prefix), {name: str(entry.get("id")) for name, entry in
                                               _entries(kv, etcd_prefix).items()}


def read_locations(etcd_endpoint: str, timeout: float = 2.0,
                   etcd_prefix: str = DEFAULT_ETCD_PREFIX) -> dict[str, dict[str, int]]:
    """``object_locations`` of the cluster whose etcd answers at ``etcd_endpoint``."""
    return read_directory(etcd_endpoint, timeout, etcd_prefix)[0]


def named_ids(etcd_endpoint: str, timeout: float = 2.0, etcd_prefix: str = DEFAULT_ETCD_PREFIX) -> dict[str, str]:
    """``{name: object id}`` of every named object (a re-put name gets a new id)."""
    return read_directory(etcd_endpoint, timeout, etcd_prefix)[1]
