"""Up and down leave nothing behind; bad input is refused before anything starts."""

from __future__ import annotations

import os
import signal
import socket

import numpy as np
import pytest

import objects
from support.localcluster import cluster_pids, wait_gone
from support.stopping import stop
from vineyard_runtime import (
    ClusterAlreadyRunning,
    ClusterNotRunning,
    InvalidSpec,
    PortInUse,
    WorkdirError,
)
from vineyard_runtime.local import LocalCluster
from vineyard_runtime.local.cluster import is_running
from vineyard_runtime.node.probe import connect_ipc
from vineyard_runtime.plumbing.processes import is_alive


def test_up_and_down_leave_no_process_or_socket(tmp_path):
    local = LocalCluster(nodes=2, size="64Mi", workdir=str(tmp_path))
    local.start()
    state = local.state
    pids = cluster_pids(state)
    try:
        assert len(pids) == 4 and all(is_alive(p) for p in pids)
        sockets = [n.socket for n in state.nodes]
        assert all(os.path.exists(s) for s in sockets)
    finally:
        local.stop()
    assert wait_gone(pids) == []
    assert not any(os.path.exists(s) for s in sockets)
    assert not os.path.exists(local.layout.state_file)
    assert not os.path.exists(local.layout.etcd_data_dir)
    assert not is_running(str(tmp_path))


def test_a_node_that_ignores_sigterm_is_killed_after_a_second_and_named_in_the_log(tmp_path):
    local = LocalCluster(nodes=2, size="64Mi", workdir=str(tmp_path))
    local.start()
    state = local.state
    pids, stuck = cluster_pids(state), state.nodes[1]
    try:
        stop(stuck.pid)  # a stopped process holds SIGTERM until it goes on
    finally:
        local.stop()
    assert wait_gone(pids) == []
    with open(local.layout.supervisor_log) as log:
        text = log.read()
    assert f"node-1 (pid {stuck.pid}) did not stop within 1.0s of SIGTERM: killed" in text
    assert f"node-0 (pid {state.nodes[0].pid})" in text and "stopping etcd" in text


def test_second_up_in_the_same_workdir_is_refused(make_cluster, tmp_path):
    local = make_cluster(nodes=1, size="64Mi", workdir=str(tmp_path))
    with pytest.raises(ClusterAlreadyRunning, match="fluidv cluster down"):
        LocalCluster(nodes=1, size="64Mi", workdir=str(tmp_path)).start()
    assert local.state.phase == "Ready", "the running cluster is untouched"


def test_down_when_nothing_runs(tmp_path):
    with pytest.raises(ClusterNotRunning, match="no cluster runs"):
        LocalCluster(nodes=1, size="64Mi", workdir=str(tmp_path)).stop()
    with pytest.raises(ClusterNotRunning, match="fluidv cluster up"):
        LocalCluster.attach(str(tmp_path))


def test_killed_supervisor_takes_its_daemons_and_leaves_state_that_up_cleans(tmp_path):
    local = LocalCluster(nodes=2, size="64Mi", workdir=str(tmp_path))
    local.start(detach=True)
    state = local.state
    pids = cluster_pids(state)
    try:
        os.kill(state.supervisor_pid, signal.SIGKILL)
        assert wait_gone(pids) == [], "daemons die with their supervisor"
        assert os.path.exists(local.layout.state_file), "a crash leaves its description"
        again = LocalCluster(nodes=2, size="64Mi", workdir=str(tmp_path))
        again.start()
        pids += cluster_pids(again.state)
        assert any("stale" in line for line in again.cleaned)
        assert again.state.phase == "Ready"
        again.stop()
    finally:
        for pid in pids:
            if is_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert wait_gone(pids) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"nodes": 0}, InvalidSpec, "--nodes must be at least 1"),
        ({"nodes": -2}, InvalidSpec, "--nodes must be at least 1"),
        ({"size": "1Gx"}, InvalidSpec, "not a size"),
        ({"size": "0"}, InvalidSpec, "greater than zero"),
        ({"size": "-1Gi"}, InvalidSpec, "must be greater than zero"),
        ({"size": "4Mi"}, InvalidSpec, "below the minimum"),
        ({"size": "100Ti"}, InvalidSpec, "more than this machine's memory"),
        ({"zones": ["a", "b"]}, InvalidSpec, "one non-empty zone per node"),
        ({"rpc_port": 70000}, InvalidSpec, "not a TCP port"),
    ],
)
def test_bad_settings_are_refused_before_anything_starts(tmp_path, kwargs, error, message):
    settings = {"nodes": 3, "size": "64Mi", "workdir": str(tmp_path / "w")}
    settings.update(kwargs)
    with pytest.raises(error, match=message):
        LocalCluster(**settings).start()
    assert not (tmp_path / "w").exists(), "nothing is created for a refused request"


def test_unwritable_workdir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(WorkdirError, match="cannot use .* pass a writable --workdir"):
        LocalCluster(nodes=1, size="64Mi", workdir=str(blocker / "sub")).start()


def test_busy_port_asked_for_explicitly(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port} .* --etcd-port"):
            LocalCluster(nodes=1, size="64Mi", workdir=str(tmp_path), etcd_port=port).start()
        with pytest.raises(PortInUse, match="--rpc-port"):
            LocalCluster(nodes=2, size="64Mi", workdir=str(tmp_path), rpc_port=port).start()
    assert not is_running(str(tmp_path))
    assert not os.path.exists(os.path.join(tmp_path, "cluster.yaml"))


def test_long_workdir_gets_short_sockets_and_down_removes_their_folder(tmp_path):
    """A workdir too deep for a socket path gets a socket folder under /tmp; down removes
    it with the readers' holds beside the sockets."""


    deep = tmp_path / ("d" * 60) / ("e" * 60)
    local = LocalCluster(nodes=1, size="64Mi", workdir=str(deep))
    local.start()
    try:
        node = local.nodes[0]
        assert len(node.socket) <= 107 and os.path.exists(node.socket)
        assert not local.layout.socket_dir.startswith(str(tmp_path))
        with connect_ipc(node.socket) as ipc:
            assert ipc.instance_id == node.instance_id
        with objects.connect(socket=node.socket) as store:
            store.put(np.arange(4), "held")
            assert int(store.get("held").sum()) == 6
        assert os.listdir(local.layout.socket_dir) != [os.path.basename(node.socket)], "a reader left its holds"
    finally:
        local.stop()
    assert not os.path.exists(local.layout.socket_dir)
