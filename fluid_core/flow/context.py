"""``StepContext``: what a processing function receives — its dataset's objects by key,
on the node it runs on, with every read and write counted (local vs remote)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from fluid_core.models.object_names import dataset_prefix, object_name
from vineyard_runtime.naming import safe_value

RUN_LABEL = "fluid.io/run"
OP_LABEL = "fluid.io/operation"


@dataclass
class IOStats:
    """Bytes and objects a step moved; remote reads had to cross nodes."""

    bytes_read: int = 0
    bytes_written: int = 0
    local_reads: int = 0
    remote_reads: int = 0
    remote_bytes: int = 0
    objects_written: int = 0
    io_seconds: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


class StepContext:
    """Get and put the objects of one dataset from a step running on one node.

    ``ctx.get("features")`` reads ``<ns>/<dataset>/features``; ``ctx.put("model", w)``
    writes it labelled with the run and the operation (TTL clean-up uses the labels).
    """

    def __init__(self, store: Any, namespace: str, dataset: str, *, run_id: str = "", operation: str = "") -> None:
        self.store = store
        self.namespace, self.dataset = namespace, dataset
        self.run_id, self.operation = run_id, operation
        #: The dataset's ``spec.mounts`` (as dicts): the storage behind it.
        self.mounts: list[dict[str, Any]] = []
        self.stats = IOStats()
        self.written: list[str] = []
        #: The processor's ``params`` (strings).
        self.params: dict[str, str] = {}
        #: Stores of further nodes, best first, where a DataLoad keeps ``replicas`` copies
        #: (local runs; on Kubernetes each copy is a pod of an Indexed Job).
        self.replica_stores: list[Any] = []
        #: Which copy this step makes (``JOB_COMPLETION_INDEX`` on Kubernetes; 0 locally).
        self.replica_index = 0

    @property
    def node(self) -> str:
        return str(self.store.node)

    def name(self, key: str) -> str:
        prefix = dataset_prefix(self.namespace, self.dataset)
        return key if key.startswith(prefix) else object_name(self.namespace, self.dataset, key)

    def key_of(self, name: str) -> str:
        """The key of one of the dataset's object names (the inverse of ``name``)."""
        return name.removeprefix(dataset_prefix(self.namespace, self.dataset))

    @property
    def labels(self) -> dict[str, str]:
        labels = {}
        if self.run_id:
            labels[RUN_LABEL] = safe_value(self.run_id)
        if self.operation:
            labels[OP_LABEL] = safe_value(self.operation)
        return labels

    def get(self, key: str) -> Any:
        """The value of ``key`` (zero-copy when it is on this node; fetched once otherwise)."""
        started = time.perf_counter()
        ref = self.store.info(self.name(key))
        value = self.store.get(ref)
        self.stats.io_seconds += time.perf_counter() - started
        self.stats.bytes_read += ref.nbytes
        if ref.node == self.node:
            self.stats.local_reads += 1
        else:
            self.stats.remote_reads += 1
            self.stats.remote_bytes += ref.nbytes
        return value

    def put(self, key: str, value: Any, *, labels: dict[str, str] | None = None, run_labels: bool = True) -> Any:
        """Write (or replace) ``key`` on this node, labelled with the run unless ``run_labels`` is False."""
        merged = {**(self.labels if run_labels else {}), **(labels or {})}
        started = time.perf_counter()
        ref = self.store.put(value, self.name(key), labels=merged, replace=True)
        self.stats.io_seconds += time.perf_counter() - started
        self.stats.bytes_written += ref.nbytes
        self.stats.objects_written += 1
        self.written.append(ref.name)
        return ref

    def keys(self, prefix: str = "") -> list[str]:
        """Keys of the dataset's objects starting with ``prefix``."""
        base = dataset_prefix(self.namespace, self.dataset)
        return [ref.name[len(base):] for ref in self.store.list(prefix=base + prefix)]

    def delete(self, key: str) -> None:
        self.store.delete(self.name(key))
