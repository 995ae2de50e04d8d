"""The local cluster's plan: a plain function of its config, layout and ports."""

from __future__ import annotations

import socket

import pytest

from vineyard_runtime.errors import PortInUse
from vineyard_runtime.local.config import ClusterConfig
from vineyard_runtime.local.layout import Layout
from vineyard_runtime.local.plan import Ports, pick_ports, plan_cluster


def test_the_plan_names_every_node_its_socket_log_labels_and_port(tmp_path):
    config = ClusterConfig(workdir=str(tmp_path), nodes=3, zones=("a", "a", "b"), spill_path="/spill")
    layout = Layout(str(tmp_path))
    state = plan_cluster(config, layout, Ports(2379, 2380, (9600, 9601, 9602)), supervisor_pid=42,
                         started_at="2026-01-01T00:00:00Z")
    assert state.etcd.endpoint == "http://127.0.0.1:2379" and state.etcd.peer_port == 2380
    assert [n.rpc_port for n in state.nodes] == [9600, 9601, 9602]
    assert [n.labels["topology.kubernetes.io/zone"] for n in state.nodes] == ["a", "a", "b"]
    assert [n.socket for n in state.nodes] == [layout.socket(n.name) for n in state.nodes]
    assert state.nodes[1].spill_path == f"/spill/{state.nodes[1].name}"
    assert state.supervisor_pid == 42 and state.phase == "Starting"
    # the same inputs, the same plan: nothing else is read
    again = plan_cluster(config, layout, Ports(2379, 2380, (9600, 9601, 9602)), supervisor_pid=42,
                         started_at="2026-01-01T00:00:00Z")
    assert again == state


def test_ports_asked_for_must_be_free(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match="--etcd-port"):
            pick_ports(ClusterConfig(workdir=str(tmp_path), etcd_port=port))
    ports = pick_ports(ClusterConfig(workdir=str(tmp_path), nodes=2))
    assert len({ports.etcd_client, ports.etcd_peer, *ports.rpc}) == 4
