"""Live status of each node: health, memory, objects, restarts."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from vineyard_runtime.etcd_client import EtcdClient
from vineyard_runtime.etcd_keys import name_key
from vineyard_runtime.node.ipc import BLOB_TYPENAME
from vineyard_runtime.node.layouts import shared_blobs
from vineyard_runtime.node.probe import connect_ipc
from vineyard_runtime.plumbing.ports import socket_accepts
from vineyard_runtime.plumbing.processes import is_alive
from vineyard_runtime.local.state import ClusterState

#: Most objects counted per status call.
LIST_LIMIT = 1_000_000
#: seconds a node may take to answer ``fluidv cluster status``
STATUS_TIMEOUT = 5.0


@dataclass
class NodeStatus:
    """What ``fluidv cluster status`` shows for one node."""

    name: str
    labels: dict[str, str]
    instance_id: int | None
    pid: int | None
    socket: str
    rpc_endpoint: str
    memory_used: int | None
    memory_limit: int | None
    objects: int | None
    health: str
    restarts: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClusterStatus:
    """What ``fluidv cluster status`` shows: the cluster's phase, its workdir and etcd,
    and each node."""

    phase: str
    workdir: str
    etcd: dict[str, Any]
    nodes: list[NodeStatus]

    @property
    def healthy(self) -> bool:
        """Every node and etcd answer."""
        return self.etcd["health"] == "healthy" and all(n.health == "healthy" for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "workdir": self.workdir, "etcd": dict(self.etcd),
                "nodes": [n.to_dict() for n in self.nodes]}


def cluster_status(state: ClusterState) -> ClusterStatus:
    """The cluster's phase, etcd and nodes, probed now. The phase is the one the
    supervisor records (``Starting``, ``Ready``, ``Degraded``, ``Stopping``), except that a
    ``Ready`` cluster in which this probe finds etcd or a node unhealthy is ``Degraded``:
    the supervisor notices a dead process, not a socket that stopped accepting."""
    nodes = collect_status(state)
    etcd = state.etcd
    health = ("down: etcd is not running (restarting)" if not is_alive(etcd.pid)
              else f"unresponsive since {etcd.unresponsive_since}" if etcd.unresponsive_since else "healthy")
    status = ClusterStatus(state.phase, state.workdir,
                           {"endpoint": etcd.endpoint, "prefix": state.etcd_prefix, "pid": etcd.pid,
                            "restarts": etcd.restarts, "health": health}, nodes)
    if status.phase == "Ready" and not status.healthy:
        status.phase = "Degraded"
    return status


def _health(pid: int | None, socket: str) -> str | None:
    if not is_alive(pid):
        return "down: vineyardd is not running (restarting)"
    if not os.path.exists(socket):
        return "down: socket missing"
    if not socket_accepts(socket):
        return "down: socket does not accept connections"
    return None


def _named_in_blobs(state: ClusterState) -> Counter[int] | None:
    """Named values kept as bare blobs of a node (their layout in the directory entry, not
    a Vineyard object), by the node's instance id; None while etcd does not answer."""
    found: Counter[int] = Counter()
    try:
        entries = EtcdClient(state.etcd.endpoint, timeout=STATUS_TIMEOUT).get_prefix(name_key(state.etcd_prefix, ""))
    except OSError:
        return None
    for value in entries.values():
        body = json.loads(value)
        if body.get("layout") is not None and shared_blobs(body["layout"]):
            found[int(body["instance"])] += 1
    return found


def collect_status(state: ClusterState) -> list[NodeStatus]:
    """Probe every node of ``state``; never raises for a sick node, reports it."""
    result: list[NodeStatus] = []
    per_instance: Counter[int] | None = None
    for node in state.nodes:
        problem = _health(node.pid, node.socket)
        if problem is None and node.unresponsive_since:
            problem = f"unresponsive since {node.unresponsive_since}: vineyardd runs but does not answer"
        used = limit = None
        if problem is None:
            try:
                with connect_ipc(node.socket, node=node.name, timeout=STATUS_TIMEOUT) as ipc:
                    status = ipc.instance_status()
                    used, limit = int(status["memory_usage"]), int(status["memory_limit"])
                    if per_instance is None:
                        per_instance = Counter(int(tree["instance_id"]) for tree in ipc.list_data(limit=LIST_LIMIT).values()
                                               if tree.get("typename") != BLOB_TYPENAME)
                        per_instance.update(_named_in_blobs(state) or {})
            except Exception as exc:  # noqa: BLE001 - report, never crash the table
                problem = f"down: {exc}"
        objects = None
        if problem is None and per_instance is not None and node.instance_id is not None:
            objects = per_instance.get(node.instance_id, 0)
        result.append(NodeStatus(
            name=node.name,
            labels=dict(node.labels),
            instance_id=node.instance_id,
            pid=node.pid,
            socket=node.socket,
            rpc_endpoint=node.rpc_endpoint,
            memory_used=used,
            memory_limit=limit,
            objects=objects,
            health=problem or "healthy",
            restarts=node.restarts,
        ))
    return result
