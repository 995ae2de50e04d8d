"""``ViewCache``: the cluster view kept current by watch events, read by admissions.

Writers (watch handlers, the location refresher) update pieces; readers get an
immutable ``ClusterView`` rebuilt at most once per change, so an admission never
waits on a remote call.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from fluid_core.placement.view import ClusterView
from vineyard_runtime.naming import cache_node_label


class ViewCache:
    """Nodes, runtimes (with their etcd endpoints) and object locations, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every node, runtime and location."""
        with self._lock:
            self._nodes: dict[str, dict[str, str]] = {}
            self._runtimes: dict[str, str | None] = {}
            self._locations: dict[str, dict[str, dict[str, int]]] = {}
            self._view: ClusterView | None = None

    def _changed(self) -> None:
        self._view = None

    def set_node(self, name: str, labels: Mapping[str, str] | None) -> None:
        with self._lock:
            self._nodes[name] = dict(labels or {})
            self._changed()

    def drop_node(self, name: str) -> None:
        with self._lock:
            if self._nodes.pop(name, None) is not None:
                self._changed()

    def set_runtime(self, namespace: str, name: str, etcd_endpoint: str | None) -> None:
        """A runtime whose dataset ``namespace/name`` is cached by labelled nodes."""
        with self._lock:
            self._runtimes[f"{namespace}/{name}"] = etcd_endpoint
            self._changed()

    def drop_runtime(self, namespace: str, name: str) -> None:
        with self._lock:
            self._runtimes.pop(f"{namespace}/{name}", None)
            self._locations.pop(f"{namespace}/{name}", None)
            self._changed()

    def runtimes(self) -> dict[str, str | None]:
        """``{"ns/name": etcd endpoint}`` of every known runtime."""
        with self._lock:
            return dict(self._runtimes)

    def set_locations(self, dataset: str, located: Mapping[str, Mapping[str, int]]) -> None:
        """Object locations of dataset ``ns/name``; only names under ``ns/name/`` count."""
        prefix = dataset + "/"
        mine = {k: dict(v) for k, v in located.items() if k.startswith(prefix)}
        with self._lock:
            if dataset in self._runtimes and self._locations.get(dataset) != mine:
                self._locations[dataset] = mine
                self._changed()

    def cached_bytes(self, dataset: str) -> int | None:
        """Bytes of dataset ``ns/name``'s objects (None before its directory was read)."""
        with self._lock:
            located = self._locations.get(dataset)
        return None if located is None else sum(n for nodes in located.values() for n in nodes.values())

    def view(self) -> ClusterView:
        """The current view (the same object until something changes)."""
        with self._lock:
            if self._view is None:
                datasets = {}
                for key in self._runtimes:
                    label = cache_node_label(*key.split("/", 1))
                    datasets[key] = tuple(n for n, labels in self._nodes.items() if labels.get(label) == "true")
                objects: dict[str, dict[str, int]] = {}
                for located in self._locations.values():
                    objects.update(located)
                self._view = ClusterView(nodes=dict(self._nodes), datasets=datasets, objects=objects)
            return self._view
