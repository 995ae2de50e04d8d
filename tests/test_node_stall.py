"""A node that stops answering (SIGSTOP): its clients fail with NodeUnavailable within
their deadline, the rest of the cluster goes on, the supervisor reports it and, past
its grace period, restarts it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import objects
from conftest import wait_for
from vineyard_runtime.local.processes import is_alive


def cluster_status(workdir: str) -> tuple[int, list[dict]]:
    done = subprocess.run([sys.executable, "-m", "fluid_core.cli", "cluster", "status", "--json", "--workdir", workdir],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout)


def test_a_stopped_node_fails_its_clients_and_is_restarted(make_cluster, monkeypatch):
    monkeypatch.setenv("FLUIDV_NODE_TIMEOUT", "2")
    local = make_cluster(nodes=2, size="128Mi", unresponsive_grace=10)
    stalled, other = objects.connect(local.nodes[0].socket), objects.connect(local.nodes[1].socket)
    stalled.put(np.ones(1 << 16), "stall/big")
    pid = local.node("node-0").pid
    os.kill(pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        with pytest.raises(objects.NodeUnavailable, match="did not answer get within 2s"):
            stalled.get("stall/big")
        assert time.monotonic() - began < 15, "the call failed instead of waiting for the node"
        with pytest.raises(objects.NodeUnavailable, match="connect again"):
            stalled.put(np.ones(4), "stall/after")  # the cut connection says so at once
        other.put(np.ones(1 << 16), "stall/elsewhere")  # the other node is not held up
        assert [r.name for r in other.list("stall/")] == ["stall/big", "stall/elsewhere"]
        wait_for(lambda: local.node("node-0").unresponsive_since, timeout=20, message="reported unresponsive")
        code, nodes = cluster_status(local.workdir)
        assert code == 2 and nodes[0]["health"].startswith("unresponsive since"), nodes
        wait_for(lambda: local.node("node-0").pid not in (None, pid), timeout=60,
                 message="restarted past its grace period")
    finally:
        if is_alive(pid):
            os.kill(pid, signal.SIGCONT)
        stalled.close()
    assert any("did not answer for" in e["message"] for e in local.state.events)
    wait_for(lambda: cluster_status(local.workdir)[0] == 0, timeout=60, message="healthy again")
    with objects.connect(local.nodes[0].socket) as again:
        again.put(np.ones(1 << 16), "stall/new")
        with pytest.raises(objects.ObjectNotFound, match="node-0"):
            again.get("stall/big")  # lost with the old process, and said so
    other.close()
