"""What a local cluster will be, before anything starts: its ports, its nodes' sockets,
logs and labels, as the ``ClusterState`` the supervisor then brings about.

``pick_ports`` is the one step that looks at the machine (which ports are free, and
whether the asked-for ones are); ``plan_cluster`` is a plain function of its inputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from vineyard_runtime.local.config import ClusterConfig
from vineyard_runtime.local.layout import Layout, node_name
from vineyard_runtime.local.state import ClusterState, EtcdState, NodeState
from vineyard_runtime.plumbing.ports import ANY_ADDRESS, LOOPBACK, free_ports, require_free

HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    rpc: tuple[int, ...]  # one per node


def pick_ports(config: ClusterConfig) -> Ports:
    """The ports asked for (PortInUse when taken), and free ones for the rest."""
    taken: set[int] = set()
    if config.etcd_port is not None:
        client_port = require_free(config.etcd_port, flag="--etcd-port")
        taken.add(client_port)
        (peer_port,) = free_ports(1, exclude=taken)
    else:
        client_port, peer_port = free_ports(2)
    taken |= {client_port, peer_port}
    if config.rpc_port is not None:
        rpc_ports = [require_free(config.rpc_port + i, flag="--rpc-port") for i in range(config.nodes)]
    else:
        rpc_ports = free_ports(config.nodes, host=ANY_ADDRESS, exclude=taken)  # where vineyardd binds it
    return Ports(client_port, peer_port, tuple(rpc_ports))


def plan_cluster(config: ClusterConfig, layout: Layout, ports: Ports, *,
                 supervisor_pid: int, started_at: str) -> ClusterState:
    """The cluster ``config`` describes, laid out in ``layout`` on ``ports``."""
    nodes = []
    for index, port in enumerate(ports.rpc):
        name = node_name(index)
        nodes.append(NodeState(
            name=name,
            labels={HOSTNAME_LABEL: name, ZONE_LABEL: config.zone(index), REGION_LABEL: config.region},
            socket=layout.socket(name),
            rpc_port=port,
            size=config.size,
            log=layout.log_file(name),
            spill_path=os.path.join(config.spill_path, name) if config.spill_path else None,
        ))
    return ClusterState(
        workdir=layout.workdir,
        phase="Starting",
        etcd=EtcdState(
            endpoint=f"http://{LOOPBACK}:{ports.etcd_client}",
            client_port=ports.etcd_client,
            peer_port=ports.etcd_peer,
            data_dir=layout.etcd_data_dir,
            log=layout.log_file("etcd"),
        ),
        etcd_prefix=config.etcd_prefix,
        nodes=nodes,
        compression=config.compression,
        supervisor_pid=supervisor_pid,
        started_at=started_at,
    )


__all__ = ["HOSTNAME_LABEL", "Ports", "REGION_LABEL", "ZONE_LABEL", "pick_ports", "plan_cluster"]
