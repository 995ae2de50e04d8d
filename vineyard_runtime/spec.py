"""Descriptions of the two daemons of a Vineyard runtime: etcd and vineyardd."""

from __future__ import annotations

from dataclasses import dataclass, field

from vineyard_runtime.errors import InvalidSpec
from vineyard_runtime.quantity import parse_quantity

#: Smallest shared-memory size a worker accepts.
MIN_WORKER_SIZE = 16 * 2**20
#: Prefix under which every worker of a runtime registers in etcd.
DEFAULT_ETCD_PREFIX = "/vineyard"
#: The session under which every instance of a cluster registers in etcd: vineyardd's root
#: session, whose id is always 0 (vineyard's ``RootSessionID``), so it is not looked up.
ROOT_SESSION = "S0000000000000000"
#: Where, under a cluster's etcd prefix, the object directory keeps one entry per name.
#: The runtime's defaults, in one place: the local cluster, the Kubernetes manifests, the
#: API models and the bridge take them from here.
ETCD_CLIENT_PORT, ETCD_PEER_PORT = 2379, 2380
RPC_PORT, METRICS_PORT, BRIDGE_METRICS_PORT, BLOB_PORT = 9600, 9144, 9145, 9700
#: Spilling starts above this share of the worker's memory and stops below the lower one.
SPILL_LOWER_RATE, SPILL_UPPER_RATE = 0.3, 0.8
#: Unix sockets cannot have longer paths (sun_path is 108 bytes with its NUL).
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class WorkerSpec:
    """One vineyardd worker: its memory, socket, metadata service and spilling."""

    size: str
    socket: str
    etcd_endpoint: str
    etcd_prefix: str = DEFAULT_ETCD_PREFIX
    rpc_port: int = RPC_PORT
    spill_path: str | None = None
    spill_lower_rate: float = SPILL_LOWER_RATE
    spill_upper_rate: float = SPILL_UPPER_RATE
    compression: bool = False
    reserve_memory: bool = False
    metrics: bool = False
    node_name: str | None = None
    host_name: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parse_quantity(self.size, what="worker size", minimum=MIN_WORKER_SIZE)
        if not self.socket:
            raise InvalidSpec("worker socket path must not be empty")
        if len(self.socket.encode()) > MAX_SOCKET_PATH:
            raise InvalidSpec(
                f"socket path {self.socket!r} is longer than {MAX_SOCKET_PATH} bytes, "
                "the limit of Unix sockets; use a shorter directory"
            )
        check_port(self.rpc_port, what="rpc port")
        if not self.etcd_endpoint.startswith(("http://", "https://")):
            raise InvalidSpec(
                f"etcd endpoint {self.etcd_endpoint!r} must start with http:// or https://"
            )
        if not self.etcd_prefix.startswith("/"):
            raise InvalidSpec(f"etcd prefix {self.etcd_prefix!r} must start with '/'")
        if not 0.0 < self.spill_lower_rate < self.spill_upper_rate <= 1.0:
            raise InvalidSpec(
                "spill rates must satisfy 0 < lower < upper <= 1, got "
                f"lower={self.spill_lower_rate} upper={self.spill_upper_rate}"
            )

    @property
    def size_bytes(self) -> int:
        """The shared-memory size in bytes."""
        return parse_quantity(self.size, what="worker size")


@dataclass(frozen=True)
class EtcdSpec:
    """One etcd member serving the workers' metadata."""

    name: str
    data_dir: str
    client_url: str
    peer_url: str
    listen_client_url: str | None = None
    listen_peer_url: str | None = None
    #: ``name=peer_url,...`` of every member; a single-member cluster when None
    initial_cluster: str | None = None
    #: Skip fsync of etcd's log. Right where the data it indexes lives in shared memory
    #: on the same machine (the local cluster): what a machine crash would lose from
    #: etcd is lost from the workers anyway, while a restarted etcd keeps every write.
    no_fsync: bool = False
    #: Keep this many past revisions; older ones are compacted (directory churn).
    compaction_retention: int = 10000

    def __post_init__(self) -> None:
        for label, url in (("client", self.client_url), ("peer", self.peer_url)):
            if not url.startswith(("http://", "https://")):
                raise InvalidSpec(f"etcd {label} url {url!r} must start with http:// or https://")


def check_port(port: int, *, what: str = "port") -> int:
    """Return ``port`` if it is a valid TCP port number, else raise InvalidSpec."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidSpec(f"{what} {port!r} is not a TCP port (1-65535)")
    return port
