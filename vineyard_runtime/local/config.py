"""What a user asks of a local cluster, validated before anything starts."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from vineyard_runtime.errors import InvalidSpec
from vineyard_runtime.local.access import Access
from vineyard_runtime.quantity import format_bytes, human_bytes, parse_quantity
from vineyard_runtime.spec import DEFAULT_ETCD_PREFIX, MIN_WORKER_SIZE, check_port

MAX_NODES = 64
DEFAULT_ZONE = "local"
DEFAULT_REGION = "local"


def physical_memory() -> int:
    """Bytes of RAM on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class ClusterConfig:
    """Nodes, their size and zones, ports asked for explicitly, and worker options."""

    workdir: str
    nodes: int = 3
    size: str = "1Gi"
    zones: tuple[str, ...] | None = None
    region: str = DEFAULT_REGION
    spill_path: str | None = None
    compression: bool = False
    reserve_memory: bool = False
    etcd_port: int | None = None
    rpc_port: int | None = None
    etcd_prefix: str = DEFAULT_ETCD_PREFIX
    start_timeout: float = 60.0
    #: seconds a node may stop answering before the supervisor restarts it (it is
    #: reported Unresponsive after UNRESPONSIVE_AFTER)
    unresponsive_grace: float = 30.0
    #: a group whose members may use the cluster too (None: its owner alone)
    group: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.nodes, bool) or not isinstance(self.nodes, int) or self.nodes < 1:
            raise InvalidSpec(f"--nodes must be at least 1, got {self.nodes!r}")
        if self.nodes > MAX_NODES:
            raise InvalidSpec(f"--nodes {self.nodes} is more than the {MAX_NODES} nodes a local cluster runs")
        size = parse_quantity(self.size, what="--size", minimum=MIN_WORKER_SIZE)
        object.__setattr__(self, "size", format_bytes(size))
        total, ram = size * self.nodes, physical_memory()
        if total > ram:
            raise InvalidSpec(
                f"{self.nodes} nodes x {self.size} = {human_bytes(total)} is more than this "
                f"machine's memory ({human_bytes(ram)}); lower --size or --nodes"
            )
        if self.zones is not None:
            zones = tuple(z.strip() for z in self.zones)
            if len(zones) != self.nodes or not all(zones):
                raise InvalidSpec(
                    f"--zones lists {len(zones)} zone(s) for {self.nodes} node(s); give one "
                    "non-empty zone per node, e.g. --zones a,a,b for 3 nodes"
                )
            object.__setattr__(self, "zones", zones)
        if self.etcd_port is not None:
            check_port(self.etcd_port, what="--etcd-port")
        if self.rpc_port is not None:
            check_port(self.rpc_port, what="--rpc-port")
            check_port(self.rpc_port + self.nodes - 1, what="--rpc-port (last node)")
        if self.start_timeout <= 0:
            raise InvalidSpec("start timeout must be positive")
        if not self.unresponsive_grace > 0:
            raise InvalidSpec(f"--unresponsive-grace must be a positive number of seconds, got {self.unresponsive_grace!r}")
        _ = self.access.gid  # an unknown group, or one this user is not in, fails here
        object.__setattr__(self, "workdir", os.path.abspath(self.workdir))
        if self.spill_path:
            object.__setattr__(self, "spill_path", os.path.abspath(self.spill_path))

    @property
    def access(self) -> Access:
        """The modes of the cluster's files and sockets."""
        return Access(self.group)

    def zone(self, index: int) -> str:
        return self.zones[index] if self.zones else DEFAULT_ZONE

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["zones"] = list(self.zones) if self.zones else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClusterConfig":
        data = dict(data)
        if data.get("zones") is not None:
            data["zones"] = tuple(data["zones"])
        return cls(**data)
