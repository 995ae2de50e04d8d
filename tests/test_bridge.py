"""The client bridge against a real local cluster: config, socket link, relink on restart."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import objects
from support.reading import Holder, memory_used
from support.waiting import wait_for as wait
from vineyard_runtime.plumbing.processes import is_alive, terminate


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(port: int, name: str) -> float:
    match = re.search(rf"^{name}(?:_total)? (\S+)$", scrape(port)[1], re.M)
    return float(match.group(1)) if match else -1.0


@pytest.fixture
def bridged(make_cluster, tmp_path):
    local = make_cluster(nodes=2, size="64Mi")
    node = local.nodes[1]
    publish = tmp_path / "dataset"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluid_core.cli", "bridge", "--socket", node.socket, "--publish-dir", str(publish),
         "--rpc-endpoint", node.rpc_endpoint, "--runtime", "demo", "--metrics-host", "127.0.0.1",
         "--metrics-port", "0", "--etcd-endpoint", local.etcd_endpoint], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        port = int(re.search(r"metrics on 127.0.0.1:(\d+)", line).group(1))
        yield local, node, publish, port
    finally:
        terminate([proc.pid])
        proc.wait()


def test_bridge_publishes_config_and_relinks_a_restarted_worker(bridged):
    local, node, publish, port = bridged
    config = publish / "vineyard-config.yaml"
    wait(lambda: config.exists() and os.path.exists(publish / "vineyard.sock"), message="published")
    # a hard link, named relative to the config: it works wherever a pod mounts the folder
    assert os.path.samefile(publish / "vineyard.sock", node.socket) and not os.path.islink(publish / "vineyard.sock")
    assert "IPCSocket: vineyard.sock\n" in config.read_text()
    assert f"RPCEndpoint: {node.rpc_endpoint}" in config.read_text()
    with objects.connect(config=str(config)) as store:
        assert store.node == node.name
        store.put(np.arange(4), name="bridge/before")
    assert scrape(port, "/healthz")[0] == 200 and metric(port, "fluidv_bridge_linked") == 1.0
    assert metric(port, "fluidv_bridge_relinks") == 0.0

    old_pid = local.node(node.name).pid
    os.kill(old_pid, signal.SIGKILL)
    wait(lambda: not is_alive(old_pid), message="worker killed")
    wait(lambda: (n := local.node(node.name)).pid not in (None, old_pid) and is_alive(n.pid) and n,
         timeout=60, message="worker restarted")
    wait(lambda: metric(port, "fluidv_bridge_relinks") >= 1.0, timeout=30, message="link renewed")

    def connects() -> bool:
        try:
            with objects.connect(config=str(config)) as store:
                store.put(np.arange(4), name="bridge/after", replace=True)
                return store.node == node.name
        except objects.ObjectsError:
            return False

    assert wait(connects, timeout=60, message="connect through the config after the restart")
    assert scrape(port, "/healthz")[0] == 200


def test_a_bridge_with_the_view_is_ready_once_the_objects_show_as_files(make_cluster, tmp_path):
    """With --view, /healthz (the pod's readiness) says 200 only once the dataset's
    objects are mounted as files; the bridge unmounts them when it stops."""
    from objects.fusemount import is_mounted

    local = make_cluster(nodes=1, size="64Mi")
    node = local.nodes[0]
    with objects.connect(socket=node.socket) as store:
        store.put(np.arange(3), "team/demo/shown")
    publish = tmp_path / "dataset"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluid_core.cli", "bridge", "--socket", node.socket, "--publish-dir", str(publish),
         "--namespace", "team", "--runtime", "demo", "--view", "--metrics-host", "127.0.0.1", "--metrics-port", "0",
         "--etcd-endpoint", local.etcd_endpoint], stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"metrics on 127.0.0.1:(\d+)", proc.stderr.readline()).group(1))
        wait(lambda: scrape(port, "/healthz")[0] == 200, timeout=120, message="the bridge ready")
        assert any(name.startswith("shown") for name in os.listdir(publish / "objects")), "ready before the view"
    finally:
        terminate([proc.pid])
        proc.wait()
    assert not is_mounted(str(publish / "objects"))


def test_bridge_without_a_worker_is_unhealthy_and_links_nothing(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluid_core.cli", "bridge", "--socket", str(tmp_path / "none.sock"),
         "--publish-dir", str(tmp_path / "pub"), "--metrics-host", "127.0.0.1", "--metrics-port", "0"],
        stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"metrics on 127.0.0.1:(\d+)", proc.stderr.readline()).group(1))
        wait(lambda: (tmp_path / "pub" / "vineyard-config.yaml").exists(), message="config published")
        assert scrape(port, "/healthz")[0] == 503
        assert not os.path.lexists(tmp_path / "pub" / "vineyard.sock")
    finally:
        terminate([proc.pid])
        proc.wait()


@contextlib.contextmanager
def edge_bridge(local, tmp_path) -> Iterator[tuple[Path, int, int]]:
    """``fluidv bridge`` on a node without a worker: it runs a local one ("edge-node")
    joined to ``local``'s etcd. Yields the publish directory, the metrics port and the
    bridge's pid."""
    from vineyard_runtime.plumbing.ports import free_ports

    publish = tmp_path / "pub"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluid_core.cli", "bridge", "--socket", str(tmp_path / "absent.sock"),
         "--publish-dir", str(publish), "--option", "size=64Mi", "--option", f"rpc_port={free_ports(1)[0]}",
         "--etcd-endpoint", local.etcd_endpoint, "--node-name", "edge-node", "--metrics-host", "127.0.0.1",
         "--metrics-port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"metrics on 127.0.0.1:(\d+)", proc.stderr.readline()).group(1))
        wait(lambda: scrape(port, "/healthz")[0] == 200, timeout=60, message="local worker linked")
        yield publish, port, proc.pid
    finally:
        terminate([proc.pid], timeout=30)
        proc.wait()


def test_a_node_without_a_worker_gets_a_local_one_joined_to_the_cluster(make_cluster, tmp_path):
    import psutil

    local = make_cluster(nodes=1, size="64Mi")
    with objects.connect(local.nodes[0].socket) as store:
        store.put(np.arange(3), name="bridge/shared")
    with edge_bridge(local, tmp_path) as (publish, _, bridge_pid):
        socket = str(publish / "local-vineyardd.sock")
        with objects.connect(config=str(publish / "vineyard-config.yaml")) as store:
            assert store.node == "edge-node"
            np.testing.assert_array_equal(store.get("bridge/shared"), np.arange(3))  # joined: sees the cluster
        # the worker is the bridge's own child, a vineyardd serving the published socket
        children = {p.pid: " ".join(p.cmdline()) for p in psutil.Process(bridge_pid).children()}
        workers = [pid for pid, command in children.items() if "vineyardd" in command and socket in command]
        assert len(workers) == 1, children
        worker_pid = workers[0]
        assert is_alive(worker_pid) and os.path.samefile(publish / "vineyard.sock", socket)
    wait(lambda: not is_alive(worker_pid), timeout=30, message="the local worker stops with the bridge")


def test_the_bridge_sweeps_for_its_node_so_a_delete_from_another_node_waits_for_its_readers(make_cluster, tmp_path):
    """What a Kubernetes worker's node gets from its bridge: the node's sweeper."""
    from vineyard_runtime.etcd_keys import sweeper_key

    local = make_cluster(nodes=1, size="64Mi")
    size = 1 << 18  # 2 MiB of float64: shared memory, not inline
    with edge_bridge(local, tmp_path) as (publish, _, _), \
            objects.connect(config=str(publish / "vineyard-config.yaml")) as edge, \
            objects.connect(local.nodes[0].socket) as far:
        announced = sweeper_key(edge.directory.prefix, edge.instance_id)
        wait(lambda: edge.directory.etcd.get(announced) is not None, message="the bridge announced its sweeper")
        before = memory_used(edge)
        edge.put(np.full(size, 7.0), "bridge/pinned")
        holder = Holder("bridge/pinned", config=str(publish / "vineyard-config.yaml"))
        try:
            far.delete("bridge/pinned")  # another node: it cannot see the edge node's pins
            for i in range(4):  # what vineyard would hand out next: the freed memory
                edge.put(np.full(size, -1.0), f"bridge/other{i}")
            assert holder.look() == ["7.0", "7.0"], "the reader's view kept its bytes"
            holder.let_go()
        finally:
            holder.kill()
            holder.wait()
        edge.delete_many(prefix="bridge/other")
        wait(lambda: memory_used(edge) == before, timeout=10, message="the bridge's sweeper freed it")
    with objects.connect(local.nodes[0].socket) as store:
        assert store.directory.etcd.get(announced) is None, "a stopped bridge withdraws its sweeper"


def test_a_socket_in_an_open_folder_is_linked_only_once_it_is_open_to_every_user(tmp_path):
    """In a folder every user may enter, vineyardd binds its socket before it opens it to
    everyone: the bridge waits for that, so no client of another user meets EACCES."""
    import socket as sockets

    from vineyard_runtime.node.bridge import Bridge

    folder = tmp_path / "runtime"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    path = str(folder / "vineyard-worker.sock")
    listener = sockets.socket(sockets.AF_UNIX)
    try:
        listener.bind(path)
        listener.listen(4)
        os.chmod(path, 0o755)  # bound and listening, not yet opened
        bridge = Bridge(path, str(tmp_path / "publish"))
        bridge.publish_config()
        assert not bridge.sync() and not os.path.lexists(bridge.link)
        os.chmod(path, 0o777)
        assert bridge.sync() and os.path.samefile(bridge.link, path)
    finally:
        listener.close()
