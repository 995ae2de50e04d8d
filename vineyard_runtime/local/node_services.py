"""What the supervisor runs beside each vineyardd: the blob server that serves its
blobs to other nodes, the sweeper that frees what nobody holds, the liveness pinger,
and the node's sidecar config. They outlive vineyardd restarts."""

from __future__ import annotations

import secrets

from vineyard_runtime.node import client_config
from vineyard_runtime.node.blob_server import BlobServer
from vineyard_runtime.etcd_keys import endpoint_key
from vineyard_runtime.etcd_client import EtcdClient
from vineyard_runtime.local.health import Liveness
from vineyard_runtime.local.state import ClusterState, NodeState
from vineyard_runtime.plumbing.ports import LOOPBACK
from vineyard_runtime.node.sweeper import NodeSweeper


class NodeServices:
    """The services of every node of one cluster."""

    def __init__(self, state: ClusterState, etcd: EtcdClient) -> None:
        self.state, self.etcd = state, etcd
        #: asked of every reader by the blob servers; only the cluster's users read it
        self.token = secrets.token_urlsafe(24)
        self.blob_servers: dict[str, BlobServer] = {}
        self.sweepers: dict[str, NodeSweeper] = {}
        self.liveness: dict[str, Liveness] = {}

    def attach(self, node: NodeState) -> None:
        """``node``'s vineyardd (re)started as instance ``node.instance_id``: announce
        its blob endpoint and instance, and (re)start watching it."""
        assert node.instance_id is not None
        prefix = self.state.etcd_prefix
        server = self.blob_servers.get(node.name)
        if server is None:
            server = self.blob_servers[node.name] = BlobServer(node.socket, host=LOOPBACK,
                                                                    token=self.token).start()
        self.etcd.put(endpoint_key(prefix, node.instance_id), server.endpoint)
        if node.name in self.liveness:
            self.liveness[node.name].reset()
        else:
            self.liveness[node.name] = Liveness(node.name, node.socket)
        if node.name not in self.sweepers:
            self.sweepers[node.name] = NodeSweeper(
                node.socket, self.state.etcd.endpoint, prefix, lambda: node.instance_id).start()
        self.sweepers[node.name].announce(node.instance_id)
        client_config.write(client_config.sidecar_path(node.socket), client_config.NodeConfig(
            socket=node.socket, rpc_endpoints=(f"{LOOPBACK}:{node.rpc_port}",),
            etcd_endpoint=self.state.etcd.endpoint, etcd_prefix=prefix, blob_token=self.token,
        ))

    def publish(self, path: str) -> None:
        """Write the whole cluster's client config to ``path``: node-0 as the default
        node, every RPC endpoint, the etcd, the token and every node's socket."""
        nodes = self.state.nodes
        client_config.write(path, client_config.NodeConfig(
            socket=nodes[0].socket, rpc_endpoints=tuple(f"{LOOPBACK}:{n.rpc_port}" for n in nodes),
            etcd_endpoint=self.state.etcd.endpoint, etcd_prefix=self.state.etcd_prefix, blob_token=self.token,
            nodes=tuple((n.name, n.socket) for n in nodes),
        ))

    def silent(self, node: str) -> float | None:
        """Seconds since ``node`` last answered a ping (None before it first started)."""
        liveness = self.liveness.get(node)
        return None if liveness is None else liveness.silent()

    def answered(self, node: str) -> None:
        """Count ``node`` as having just answered (it was restarted)."""
        self.liveness[node].reset()

    def close(self) -> None:
        """Stop every service: all are told first, then each is waited for."""
        for liveness in self.liveness.values():
            liveness.stop()
        for sweeper in self.sweepers.values():
            sweeper.stop_soon()
        for server in self.blob_servers.values():
            server.shutdown()
            server.server_close()
        for sweeper in self.sweepers.values():
            sweeper.stop()


__all__ = ["NodeServices"]
