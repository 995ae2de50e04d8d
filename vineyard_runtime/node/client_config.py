"""A node's ``vineyard-config.yaml``: how clients reach its vineyardd and its cluster's etcd.

Fluid's format (``Vineyard: {IPCSocket, RPCEndpoint}``) with four more keys:
``EtcdEndpoint`` and ``EtcdPrefix``, which the object directory needs,
``BlobToken``, which the cluster's blob servers ask of readers, and ``Nodes``
(node name -> socket), with which a client picks a node of a local cluster. The local
cluster writes one beside each node's socket (``<socket>.yaml``) and one for the whole
cluster in its working directory; on Kubernetes the client bridge writes it into the
dataset's mount directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import yaml

from vineyard_runtime.spec import DEFAULT_ETCD_PREFIX

CONFIG_FILE = "vineyard-config.yaml"


@dataclass(frozen=True)
class NodeConfig:
    """What a client needs to use one node: socket, RPC endpoints, etcd and prefix."""

    socket: str | None = None
    rpc_endpoints: tuple[str, ...] = ()
    etcd_endpoint: str | None = None
    etcd_prefix: str = DEFAULT_ETCD_PREFIX
    #: what the cluster's blob servers ask of a reader (None: they ask nothing)
    blob_token: str | None = None
    #: (node name, socket) of every node, for a config that describes a whole local cluster
    nodes: tuple[tuple[str, str], ...] = ()

    def to_yaml(self) -> str:
        section: dict[str, str] = {}
        if self.socket:
            section["IPCSocket"] = self.socket
        if self.rpc_endpoints:
            section["RPCEndpoint"] = ",".join(self.rpc_endpoints)
        if self.etcd_endpoint:
            section["EtcdEndpoint"] = self.etcd_endpoint
            section["EtcdPrefix"] = self.etcd_prefix
        if self.blob_token:
            section["BlobToken"] = self.blob_token
        body: dict[str, object] = dict(section)
        if self.nodes:
            body["Nodes"] = dict(self.nodes)
        return str(yaml.safe_dump({"Vineyard": body}, sort_keys=False))

    @classmethod
    def from_mapping(cls, data: object) -> "NodeConfig":
        section = data.get("Vineyard", data) if isinstance(data, dict) else {}
        if not isinstance(section, dict):
            section = {}
        endpoints = tuple(e.strip() for e in str(section.get("RPCEndpoint") or "").split(",") if e.strip())
        nodes = section.get("Nodes")
        return cls(
            socket=str(section["IPCSocket"]) if section.get("IPCSocket") else None,
            rpc_endpoints=endpoints,
            etcd_endpoint=str(section["EtcdEndpoint"]) if section.get("EtcdEndpoint") else None,
            etcd_prefix=str(section.get("EtcdPrefix") or DEFAULT_ETCD_PREFIX),
            blob_token=str(section["BlobToken"]) if section.get("BlobToken") else None,
            nodes=tuple((str(k), str(v)) for k, v in nodes.items()) if isinstance(nodes, dict) else (),
        )

    def node_socket(self, node: str) -> str | None:
        """The socket of ``node`` named in ``Nodes`` (None when it names no such node)."""
        return dict(self.nodes).get(node)


def sidecar_path(socket: str) -> str:
    """Where the local cluster keeps the config of the node serving ``socket``."""
    return socket + ".yaml"


def write(path: str, config: NodeConfig) -> None:
    """Write ``config`` to ``path`` atomically (readers never see half a file)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as handle:
        handle.write(config.to_yaml())
    os.replace(tmp, path)


def for_socket(socket: str) -> NodeConfig | None:
    """The config published for ``socket``: ``<socket>.yaml``, else a
    ``vineyard-config.yaml`` in the socket's directory; None when neither exists."""
    for path in (sidecar_path(socket), os.path.join(os.path.dirname(socket), CONFIG_FILE)):
        try:
            with open(path) as handle:
                return NodeConfig.from_mapping(yaml.safe_load(handle))
        except (OSError, yaml.YAMLError):
            continue
    return None
