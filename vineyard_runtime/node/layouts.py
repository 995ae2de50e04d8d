"""An object's layout as it crosses nodes, and the Vineyard metadata trees it is made of.

A layout is JSON: ``{"fields": {...}, "members": {key: member}}``, where a member is a
layout again, a shared-memory blob ``{"shared": <blob id>, "size": <bytes>}``, or what the
package above writes inline. Blob servers send it (``LAYOUT``, ``OBJECT``); directory
entries carry it; readers of ``objects`` decode it. A tree is what vineyardd answers for an
object (``get_data``): its fields, and its members as trees, a blob's typename
``vineyard::Blob``.
"""

from __future__ import annotations

from typing import Any

from vineyard_runtime.node.ipc import BLOB_TYPENAME, EMPTY_BLOB, VINEYARD_FIELDS
from vineyard_runtime.object_ids import object_name

_EMPTY = object_name(EMPTY_BLOB)


def tree_blobs(tree: dict[str, Any]) -> list[str]:
    """Ids of the blobs (but the empty one) a Vineyard metadata tree refers to."""
    found = []
    for value in tree.values():
        if isinstance(value, dict):
            if value.get("typename") == BLOB_TYPENAME:
                if value["id"] != _EMPTY:
                    found.append(str(value["id"]))
            else:
                found += tree_blobs(value)
    return found


def tree_layout(tree: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any]:
    """The layout of a Vineyard metadata tree; its blobs' ``sizes`` by id (a member's own
    record of a blob says 0)."""
    fields: dict[str, Any] = {}
    members: dict[str, Any] = {}
    for key, value in tree.items():
        if not isinstance(value, dict):
            if key not in VINEYARD_FIELDS:
                fields[key] = value
        elif value.get("typename") != BLOB_TYPENAME:
            members[key] = tree_layout(value, sizes)
        else:
            blob = str(value["id"])
            members[key] = {"shared": blob, "size": 0 if blob == _EMPTY else sizes[blob]}
    return {"fields": fields, "members": members}


def shared_blobs(layout: dict[str, Any]) -> list[str]:
    """Ids of the (non-empty) shared-memory blobs a layout refers to, in the order an
    OBJECT reply sends them."""
    found = []
    for member in layout.get("members", {}).values():
        if "shared" in member:
            if member["size"]:
                found.append(member["shared"])
        elif "members" in member:
            found += shared_blobs(member)
    return found


__all__ = ["shared_blobs", "tree_blobs", "tree_layout"]
