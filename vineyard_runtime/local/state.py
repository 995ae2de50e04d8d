"""``cluster.yaml``: the description of a running local cluster."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from vineyard_runtime.local.layout import Layout


@dataclass
class EtcdState:
    """The cluster's etcd member."""

    endpoint: str
    client_port: int
    peer_port: int
    data_dir: str
    log: str
    pid: int | None = None
    restarts: int = 0
    #: when the node stopped answering (it runs, but calls to it wait), else None
    unresponsive_since: str | None = None


@dataclass
class NodeState:
    """One vineyardd acting as a node."""

    name: str
    labels: dict[str, str]
    socket: str
    rpc_port: int
    size: str
    log: str
    spill_path: str | None = None
    instance_id: int | None = None
    pid: int | None = None
    restarts: int = 0
    #: when the node stopped answering (it runs, but calls to it wait), else None
    unresponsive_since: str | None = None

    @property
    def rpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.rpc_port}"


@dataclass
class ClusterState:
    """Everything ``fluidv cluster status`` and clients need to find the daemons."""

    workdir: str
    phase: str
    etcd: EtcdState
    etcd_prefix: str
    nodes: list[NodeState]
    compression: bool = False
    supervisor_pid: int | None = None
    started_at: str | None = None
    events: list[dict[str, str]] = field(default_factory=list)

    def record(self, at: str, message: str, keep: int = 50) -> None:
        """Add an event to the log ``cluster status`` shows (the last ``keep`` stay)."""
        self.events = (self.events + [{"time": at, "message": message}])[-keep:]

    def node(self, name: str) -> NodeState:
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise KeyError(f"no node named {name!r} in this cluster (nodes: {known})")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for node, raw in zip(self.nodes, data["nodes"]):
            raw["rpc_endpoint"] = node.rpc_endpoint
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClusterState":
        nodes = []
        for raw in data["nodes"]:
            raw = dict(raw)
            raw.pop("rpc_endpoint", None)
            nodes.append(NodeState(**raw))
        return cls(
            **{k: v for k, v in data.items() if k not in ("etcd", "nodes")},
            etcd=EtcdState(**data["etcd"]),
            nodes=nodes,
        )


def write_state(layout: Layout, state: ClusterState) -> None:
    """Replace cluster.yaml atomically."""
    tmp = layout.state_file + ".tmp"
    with open(tmp, "w") as handle:
        yaml.safe_dump(state.to_dict(), handle, sort_keys=False)
    os.replace(tmp, layout.state_file)


def read_state(layout: Layout) -> ClusterState | None:
    """The recorded state, or None when no cluster.yaml exists."""
    try:
        with open(layout.state_file) as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        return None
    return ClusterState.from_dict(data) if data else None
