"""``ClusterView``: what placement knows about nodes, dataset caches and object bytes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from fluid_core.errors import FluidError
from vineyard_runtime.naming import cache_node_label


class InvalidView(FluidError, ValueError):
    """A cluster view given as a dict does not have the documented shape."""


@dataclass(frozen=True)
class ClusterView:
    """Nodes with their labels; the nodes caching each dataset (``"ns/name"``); the
    bytes each node holds of each named object (``"ns/dataset/key"``).

    Immutable: a cache swaps in a new view, admissions read whichever is current.
    """

    nodes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    datasets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    objects: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ClusterView":
        """``{"nodes": {name: {labels}}, "datasets": {"ns/name": [node, ...]},
        "objects": {"ns/name/key": {node: nbytes}}}``; every part optional."""
        if not isinstance(data, Mapping):
            raise InvalidView(f"a cluster view is a mapping, not {type(data).__name__}")
        unknown = set(data) - {"nodes", "datasets", "objects"}
        if unknown:
            raise InvalidView(f"unknown cluster view keys {sorted(unknown)}; use nodes, datasets, objects")
        nodes = {str(n): {str(k): str(v) for k, v in (labels or {}).items()}
                 for n, labels in _mapping(data, "nodes").items()}
        datasets = {}
        for key, members in _mapping(data, "datasets").items():
            if key.count("/") != 1:
                raise InvalidView(f"datasets: {key!r} is not 'namespace/name'")
            datasets[key] = tuple(str(m) for m in members)
        objects = {}
        for key, holders in _mapping(data, "objects").items():
            if key.count("/") < 2:
                raise InvalidView(f"objects: {key!r} is not 'namespace/dataset/key'")
            if not isinstance(holders, Mapping):
                raise InvalidView(f"objects: {key!r} maps nodes to byte counts, got {type(holders).__name__}")
            objects[key] = {str(n): int(b) for n, b in holders.items()}
        return cls(nodes=nodes, datasets=datasets, objects=objects)

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": {n: dict(v) for n, v in self.nodes.items()},
                "datasets": {k: list(v) for k, v in self.datasets.items()},
                "objects": {k: dict(v) for k, v in self.objects.items()}}

    def labels(self, node: str) -> Mapping[str, str]:
        return self.nodes.get(node, {})

    @cached_property
    def _cache_labels(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for key, members in self.datasets.items():
            namespace, name = key.split("/", 1)
            for node in members:
                out.setdefault(node, {})[cache_node_label(namespace, name)] = "true"
        return out

    def node_labels(self, node: str) -> dict[str, str]:
        """The node's labels with the cache label of every dataset it caches."""
        return {**self.nodes.get(node, {}), **self._cache_labels.get(node, {})}

    def object_bytes(self, keys: list[str]) -> dict[str, int]:
        """Bytes per node of the objects ``keys`` (unknown keys hold nothing)."""
        total: dict[str, int] = {}
        for key in keys:
            for node, nbytes in self.objects.get(key, {}).items():
                total[node] = total.get(node, 0) + nbytes
        return total


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise InvalidView(f"{key}: expected a mapping, got {type(value).__name__}")
    return value
