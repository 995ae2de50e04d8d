"""A node that stops answering (SIGSTOP): its clients fail with NodeUnavailable within
their deadline, the rest of the cluster goes on, the supervisor reports it and, past
its grace period, restarts it."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import objects
from support.stopping import stop, stopped
from support.waiting import wait_for
from vineyard_runtime.plumbing.processes import is_alive


def cluster_status(workdir: str) -> tuple[int, list[dict]]:
    done = subprocess.run([sys.executable, "-m", "fluid_core.cli", "cluster", "status", "--json", "--workdir", workdir],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout)["nodes"]


def test_a_stopped_node_fails_its_clients_and_is_restarted(make_cluster, monkeypatch):
    monkeypatch.setenv("FLUIDV_NODE_TIMEOUT", "2")
    local = make_cluster(nodes=2, size="128Mi", unresponsive_grace=10)
    stalled, other = objects.connect(local.nodes[0].socket), objects.connect(local.nodes[1].socket)
    stalled.put(np.ones(1 << 16), "stall/big")
    pid = local.node("node-0").pid
    stop(pid)
    try:
        with pytest.raises(objects.NodeUnavailable, match="did not answer get within 2s"):
            stalled.get("stall/big")  # a deadline that did not fire would hang past the test's limit
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


def test_streams_and_allocations_on_a_stopped_node_fail_within_the_deadline(make_cluster, monkeypatch):
    monkeypatch.setenv("FLUIDV_NODE_TIMEOUT", "2")
    local = make_cluster(nodes=1, size="128Mi", unresponsive_grace=600)  # no restart during the test
    socket, pid = local.nodes[0].socket, local.node("node-0").pid
    with objects.connect(socket) as store, store.open_writer("stall/stream") as writer:
        writer.write(np.ones(1 << 16))  # 512 KiB: blobs in shared memory, not inline
    attempts = {  # what is made before the node stops, then what is tried on it
        "allocate": lambda store: store.allocate(1 << 16, name="stall/allocated").__enter__,
        "a stream write": lambda store: functools.partial(store.open_writer("stall/written").write, np.ones(1 << 16)),
        "a stream read": lambda store: lambda: list(store.open_reader("stall/stream")),
        "put": lambda store: functools.partial(store.put, np.ones(1 << 16)),  # unnamed: Vineyard metadata too
    }
    for what, prepare in attempts.items():
        with objects.connect(socket) as store:  # a cut connection is cut for the whole process: a new one
            attempt = prepare(store)
            with stopped(pid):
                try:
                    answer = attempt()
                except objects.NodeUnavailable as exc:
                    assert f"did not answer {what} within 2s" in str(exc), str(exc)
                else:
                    pytest.fail(f"{what} on a stopped node returned {answer!r}")
    with objects.connect(socket) as store, stopped(pid):
        assert store.node == "node-0", "a node's name is read from the directory, not asked of the node"
    with objects.connect(socket) as store:  # the node answers again, and nothing half-made was named
        assert store.list("stall/") == []  # the cut allocation was not published
