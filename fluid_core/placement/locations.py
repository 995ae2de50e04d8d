"""Where a Vineyard cluster keeps each named object, read from its etcd metadata.

vineyardd keeps, under ``<prefix>/<session>/``: ``instances/i<id>/nodename``,
``names/<name>`` (the object id in decimal, ``/`` written ``~1``) and ``data/o<hex>``
(the object's metadata: ``instance_id``, ``nbytes``, members as ``"lo<hex>..."``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

PREFIX = "/vineyard/"
_MEMBER = re.compile(r"^l(o[0-9a-f]{16})")


def object_locations(kv: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """``{name: {node: nbytes}}`` of every named object in the key-values of a
    Vineyard cluster's etcd (as returned for the prefix ``/vineyard/``)."""
    nodes: dict[int, str] = {}
    names: dict[str, str] = {}
    data: dict[str, dict[str, Any]] = {}
    for key, raw in kv.items():
        parts = key.split("/")
        if len(parts) < 5 or parts[1] != "vineyard":
            continue
        kind, rest = parts[3], parts[4:]
        try:
            if kind == "instances" and len(rest) == 2 and rest[1] == "nodename":
                nodes[int(rest[0].lstrip("i"))] = json.loads(raw)
            elif kind == "names" and len(rest) == 1:
                names[_unescape(rest[0])] = f"o{int(raw):016x}"
            elif kind == "data" and len(rest) == 1:
                data[rest[0]] = json.loads(raw)
        except (ValueError, TypeError):
            continue  # a key being written or of another version: skip it
    located = {}
    for name, oid in names.items():
        holders: dict[str, int] = {}
        _attribute(oid, data, nodes, holders, depth=0)
        if holders:
            located[name] = holders
    return located


def _attribute(oid: str, data: Mapping[str, dict[str, Any]], nodes: Mapping[int, str],
               holders: dict[str, int], depth: int) -> int:
    """Add the bytes of ``oid`` to ``holders`` by node; members on other nodes count there."""
    meta = data.get(oid)
    if meta is None or depth > 32:
        return 0
    members = [m.group(1) for v in meta.values() if isinstance(v, str) and (m := _MEMBER.match(v))]
    counted = sum(_attribute(m, data, nodes, holders, depth + 1) for m in members if m in data)
    nbytes = int(meta.get("nbytes") or 0)
    own = max(nbytes - counted, 0)
    if own:
        node = nodes.get(int(meta.get("instance_id", -1)), f"instance-{meta.get('instance_id')}")
        holders[node] = holders.get(node, 0) + own
    return max(nbytes, counted)


def _unescape(name: str) -> str:
    return name.replace("~1", "/").replace("~0", "~")


def named_ids(etcd_endpoint: str, timeout: float = 2.0) -> dict[str, str]:
    """``{name: object id}`` of every named object (a re-put name gets a new id)."""
    from vineyard_runtime.etcd_client import EtcdClient  # noqa: PLC0415

    client = EtcdClient(etcd_endpoint, timeout=timeout)
    first = client.keys(PREFIX, limit=1)  # the session folder (one per cluster), without listing every key
    if not first or first[0].count("/") < 3:
        return {}
    session = "/".join(first[0].split("/")[:3])
    return {_unescape(key.rsplit("/", 1)[-1]): raw for key, raw in client.get_prefix(f"{session}/names/").items()}


def read_locations(etcd_endpoint: str, timeout: float = 2.0) -> dict[str, dict[str, int]]:
    """``object_locations`` of the Vineyard cluster whose etcd answers at ``etcd_endpoint``."""
    from vineyard_runtime.etcd_client import EtcdClient  # noqa: PLC0415

    return object_locations(EtcdClient(etcd_endpoint, timeout=timeout).get_prefix(PREFIX))
