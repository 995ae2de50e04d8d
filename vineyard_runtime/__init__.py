"""The Vineyard runtime: one description of the etcd and vineyardd daemons.

The same description (argv, env, ports, sizes) serves the local cluster, which
runs real daemons on this machine, and the Kubernetes engine, which turns it
into StatefulSets and Services.
"""

from vineyard_runtime.errors import (
    ClusterAlreadyRunning,
    ClusterNotRunning,
    ClusterStartError,
    InvalidSpec,
    NodeUnavailable,
    PortInUse,
    VineyardRuntimeError,
    WorkdirError,
)
from vineyard_runtime.quantity import format_bytes, parse_quantity
from vineyard_runtime.spec import EtcdSpec, WorkerSpec

__all__ = [
    "ClusterAlreadyRunning",
    "ClusterNotRunning",
    "ClusterStartError",
    "EtcdSpec",
    "InvalidSpec",
    "NodeUnavailable",
    "PortInUse",
    "VineyardRuntimeError",
    "WorkdirError",
    "WorkerSpec",
    "format_bytes",
    "parse_quantity",
]
