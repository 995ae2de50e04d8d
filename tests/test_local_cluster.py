"""A real 3-node local cluster: readiness, cross-node reads, supervision."""

from __future__ import annotations

import os
import shutil
import signal

import numpy as np
import pytest
import yaml

import objects
from support.optional import needs_vineyard_client
from support.waiting import wait_for
from support.stopping import stop
from vineyard_runtime import NodeUnavailable
from vineyard_runtime.etcd_client import EtcdClient
from vineyard_runtime.node.probe import connect_ipc, registered_instances
from vineyard_runtime.plumbing.processes import is_alive


def put_named(local, node, name, value):
    with objects.connect(workdir=local.workdir, node=node) as store:
        return store.put(value, name, replace=True)


def read_named(local, node, name):
    with objects.connect(workdir=local.workdir, node=node) as store:
        return np.array(store.get(name))


def test_every_node_is_ready_and_sees_every_other(shared_cluster):
    nodes = shared_cluster.nodes
    assert [n.name for n in nodes] == ["node-0", "node-1", "node-2"]
    ids = {n.instance_id for n in nodes}
    assert len(ids) == 3
    for node in nodes:
        assert os.path.exists(node.socket) and is_alive(node.pid)
        with connect_ipc(node.socket, node=node.name) as ipc:
            seen = ipc.cluster_meta()
            assert ipc.instance_id == node.instance_id
            assert ids <= set(seen)
            assert seen[node.instance_id]["nodename"] == node.name
            assert seen[node.instance_id]["rpc_endpoint"] == node.rpc_endpoint


@needs_vineyard_client
def test_vineyards_own_client_reads_across_the_nodes(shared_cluster):
    """vineyard's own client (the vineyard extra) of a node: its names and migration work
    across the local cluster's nodes as in any Vineyard cluster."""
    writer, reader = shared_cluster.client("node-0"), shared_cluster.client(2)
    try:
        oid = writer.put(np.arange(6.0), persist=True)
        writer.put_name(oid, "t/vineyards-own")
        np.testing.assert_array_equal(np.array(reader.get(name="t/vineyards-own", fetch=True)), np.arange(6.0))
        writer.drop_name("t/vineyards-own")
    finally:
        writer.close()
        reader.close()


def test_labels_follow_the_zones(shared_cluster):
    labels = [n.labels for n in shared_cluster.nodes]
    assert [lab["topology.kubernetes.io/zone"] for lab in labels] == ["a", "a", "b"]
    assert [lab["kubernetes.io/hostname"] for lab in labels] == ["node-0", "node-1", "node-2"]
    assert all(lab["topology.kubernetes.io/region"] for lab in labels)


def test_cluster_yaml_describes_the_daemons(shared_cluster):
    with open(shared_cluster.layout.state_file) as handle:
        data = yaml.safe_load(handle)
    assert data["phase"] == "Ready"
    assert data["etcd"]["endpoint"].startswith("http://127.0.0.1:")
    for raw, node in zip(data["nodes"], shared_cluster.nodes):
        assert raw["socket"] == node.socket
        assert raw["rpc_endpoint"].startswith("127.0.0.1:")
        assert raw["pid"] == node.pid


def test_object_put_on_node0_is_read_on_node2(shared_cluster):
    value = np.arange(100_000, dtype=np.float64)
    put_named(shared_cluster, "node-0", "t/cross", value)
    np.testing.assert_array_equal(read_named(shared_cluster, "node-2", "t/cross"), value)


def test_status_reports_memory_objects_and_health(shared_cluster):
    put_named(shared_cluster, "node-1", "t/status", np.zeros(1 << 16))
    rows = {s.name: s for s in shared_cluster.status()}
    assert all(s.health == "healthy" for s in rows.values())
    assert rows["node-1"].memory_used >= 8 * (1 << 16)
    assert rows["node-1"].memory_limit == 256 * 2**20
    assert rows["node-1"].objects >= 1


def test_missing_node_fails_at_once_with_a_hint(shared_cluster, tmp_path):
    with pytest.raises(NodeUnavailable, match="fluidv cluster up") as info:
        connect_ipc(str(tmp_path / "absent.sock"), node="node-9")
    assert "absent.sock" in str(info.value) and "missing" in str(info.value)
    with pytest.raises(KeyError, match="no node named 'node-9'"):
        shared_cluster.client("node-9")


@needs_vineyard_client
def test_vineyards_client_of_a_missing_node_fails_at_once(tmp_path, monkeypatch):
    import vineyard

    from vineyard_runtime.node.probe import connect_vineyard

    calls: list[tuple] = []
    real = vineyard.connect
    monkeypatch.setattr(vineyard, "connect", lambda *args, **kwargs: calls.append(args) or real(*args, **kwargs))
    with pytest.raises(NodeUnavailable, match="fluidv cluster up"):
        connect_vineyard(str(tmp_path / "absent.sock"), node="node-9")
    assert calls == [], "must not sit in vineyard's 11 s retry loop: its connect is never called"


def test_killed_vineyardd_is_restarted_and_others_keep_their_objects(make_cluster):
    local = make_cluster(nodes=3)
    value = np.arange(1000.0)
    put_named(local, "node-0", "t/kept", value)
    victim = local.node("node-1")
    os.kill(victim.pid, signal.SIGKILL)

    def restarted():
        node = local.node("node-1")
        return node.restarts == 1 and node.pid != victim.pid and is_alive(node.pid) and node

    node = wait_for(restarted, message="node-1 restarted")
    assert wait_for(lambda: local.state.phase == "Ready", message="phase Ready")
    # the restarted node serves clients and reads an object held by a node that did not die
    np.testing.assert_array_equal(read_named(local, "node-1", "t/kept"), value)
    np.testing.assert_array_equal(read_named(local, "node-2", "t/kept"), value)
    put_named(local, "node-1", "t/after", np.ones(10))
    np.testing.assert_array_equal(read_named(local, "node-0", "t/after"), np.ones(10))
    status = {s.name: s for s in local.status()}
    assert status["node-1"].restarts == 1 and status["node-1"].pid == node.pid
    assert any("node-1" in e["message"] and "restarted" in e["message"] for e in local.state.events)


def test_etcd_restart_leaves_the_cluster_usable(make_cluster):
    local = make_cluster(nodes=2)
    put_named(local, "node-0", "t/before", np.arange(5.0))
    old = local.state.etcd.pid
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: local.state.etcd.restarts == 1 and local.state.phase == "Ready",
             message="etcd restarted")
    assert local.state.etcd.pid != old and is_alive(local.state.etcd.pid)
    np.testing.assert_array_equal(read_named(local, "node-1", "t/before"), np.arange(5.0))
    put_named(local, "node-1", "t/after", np.arange(3.0))
    np.testing.assert_array_equal(read_named(local, "node-0", "t/after"), np.arange(3.0))


def test_etcd_losing_its_data_gets_workers_registered_again(make_cluster):
    local = make_cluster(nodes=2)
    state = local.state
    stop(state.etcd.pid)
    shutil.rmtree(state.etcd.data_dir)
    os.kill(state.etcd.pid, signal.SIGKILL)
    etcd = EtcdClient(state.etcd.endpoint)

    def all_registered():
        current = local.state
        ids = {n.instance_id for n in current.nodes}
        registered = registered_instances(etcd, current.etcd_prefix)
        return current.phase == "Ready" and ids <= set(registered) and all(
            n.restarts >= 1 for n in current.nodes)

    wait_for(all_registered, timeout=60, message="workers registered again")
    put_named(local, "node-0", "t/new", np.arange(7.0))
    np.testing.assert_array_equal(read_named(local, "node-1", "t/new"), np.arange(7.0))
    assert any("lost its data" in e["message"] for e in local.state.events)
