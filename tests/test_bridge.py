"""The client bridge against a real local cluster: config, socket link, relink on restart."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

import objects
from conftest import wait_for as wait
from vineyard_runtime.local.processes import is_alive, terminate


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
         "--metrics-port", "0"], stderr=subprocess.PIPE, text=True)
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
    wait(lambda: config.exists() and os.path.islink(publish / "vineyard.sock"), message="published")
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


def test_a_node_without_a_worker_gets_a_local_one_joined_to_the_cluster(make_cluster, tmp_path):
    from vineyard_runtime.local.processes import cmdline  # noqa: PLC0415
    from vineyard_runtime.ports import free_ports  # noqa: PLC0415

    local = make_cluster(nodes=1, size="64Mi")
    with objects.connect(local.nodes[0].socket) as store:
        store.put(np.arange(3), name="bridge/shared")
    publish = tmp_path / "pub"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluid_core.cli", "bridge", "--socket", str(tmp_path / "absent.sock"),
         "--publish-dir", str(publish), "--option", "size=64Mi", "--option", f"rpc_port={free_ports(1)[0]}",
         "--etcd-endpoint", local.etcd_endpoint, "--node-name", "edge-node", "--metrics-host", "127.0.0.1",
         "--metrics-port", "0"], stderr=subprocess.PIPE, text=True)
    worker_pid = None
    try:
        port = int(re.search(r"metrics on 127.0.0.1:(\d+)", proc.stderr.readline()).group(1))
        wait(lambda: scrape(port, "/healthz")[0] == 200, timeout=60, message="local worker linked")
        with objects.connect(config=str(publish / "vineyard-config.yaml")) as store:
            assert store.node == "edge-node"
            np.testing.assert_array_equal(store.get("bridge/shared"), np.arange(3))  # joined: sees the cluster
        found = subprocess.run(["pgrep", "-f", str(publish / "local-vineyardd.sock")], capture_output=True, text=True)
        worker_pid = int(found.stdout.split()[0])
        assert "vineyardd" in cmdline(worker_pid)
    finally:
        terminate([proc.pid], timeout=30)
        proc.wait()
    assert worker_pid is not None
    wait(lambda: not is_alive(worker_pid), timeout=30, message="the local worker stops with the bridge")
