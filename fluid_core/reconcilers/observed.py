"""What the operator observed in the cluster, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Workload:
    """A StatefulSet's or DaemonSet's replica counts."""

    desired: int
    ready: int
    #: replicas (pods) there are now, whatever their state
    current: int = 0


@dataclass(frozen=True)
class RuntimeObserved:
    """The runtime's workloads and nodes, as last seen."""

    dataset_exists: bool = True
    master: Workload | None = None
    workers: Workload | None = None
    bridge: Workload | None = None
    #: nodes where a worker pod runs
    worker_nodes: frozenset[str] = frozenset()
    #: nodes that carry this runtime's cache labels now
    labelled_nodes: frozenset[str] = frozenset()
    #: the uid of the etcd master's pod (None: none runs, or the etcd is external)
    master_pod: str | None = None
    #: worker pods whose vineyardd started before the master's pod did (registered with
    #: a master that is gone), by ordinal
    stale_workers: tuple[str, ...] = ()
    #: worker pods not ready or being deleted (starting, restarting, going)
    unready_workers: int = 0


@dataclass(frozen=True)
class DatasetObserved:
    """The dataset's runtime and users, as last seen."""

    runtime_exists: bool = False
    runtime_ready: bool = False
    #: pods (namespace/name) that mount the dataset's PVC
    pods_using: tuple[str, ...] = field(default_factory=tuple)
    #: bytes of shared memory the runtime's ready workers hold (None: no runtime)
    cache_capacity: int | None = None
    #: bytes of the dataset's objects, from its runtime's object directory (None: not read yet)
    cached: int | None = None
    #: the Job restoring its ``dataRestoreLocation`` (a ``JobObserved``; None: none yet)
    restore_job: Any = None
