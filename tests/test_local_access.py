"""Who may use a local cluster: its owner alone by default, one group when asked;
checked as another local user would try (``nobody``, through the system's python)."""

from __future__ import annotations

import grp
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from support.localcluster import cluster_pids, force_stop
from vineyard_runtime.errors import InvalidSpec
from vineyard_runtime.local import LocalCluster

NOBODY, NOGROUP = 65534, 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"),
                                reason="needs root, to act as another user (nobody)")

PROBE = """
import json, socket, sys
seen = {}
for what, path in json.loads(sys.argv[1]).items():
    try:
        if what.startswith("socket"):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
        elif what.startswith("blobs"):
            host, port = path.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(b"LAYOUT o0000000000000001" + bytes([10]))
                reply = s.makefile("rb").readline().decode()
            seen[what] = "allowed" if reply.startswith("OK") or "not authorized" not in reply else reply.strip()
            continue
        else:
            open(path).read()
        seen[what] = "allowed"
    except OSError as exc:
        seen[what] = type(exc).__name__
print(json.dumps(seen))
"""


def as_user(uid: int, gid: int, paths: dict[str, str]) -> dict[str, str]:
    """What another user may do to ``paths``: 'allowed', or the error it got."""
    def become() -> None:
        os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)

    done = subprocess.run(["/usr/bin/python3", "-c", PROBE, json.dumps(paths)], preexec_fn=become,
                          capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)


@pytest.fixture
def open_dir() -> Iterator[str]:
    """A directory every user may enter (as /tmp or a home is), so only the cluster's own
    modes stand between its files and another user."""
    path = tempfile.mkdtemp(prefix="fluidv-access-")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cluster(open_dir) -> Iterator:
    started = []

    def start(workdir: str, **kwargs) -> LocalCluster:
        local = LocalCluster(nodes=1, size="64Mi", workdir=workdir, **kwargs)
        started.append((local, set()))
        local.start()
        started[-1][1].update(cluster_pids(local.state))
        return local

    try:
        yield start
    finally:
        for local, seen in started:
            force_stop(local, seen)


def paths_of(local: LocalCluster) -> dict[str, str]:
    node = local.state.nodes[0]
    return {"socket": node.socket, "cluster.yaml": local.layout.state_file, "node config": node.socket + ".yaml",
            "node log": node.log, "supervisor log": local.layout.supervisor_log}


def test_by_default_another_user_reaches_nothing(cluster, open_dir):
    workdir = os.path.join(open_dir, "w")
    os.makedirs(os.path.join(workdir, "logs"), mode=0o755)  # left world-readable by an earlier version
    with open(os.path.join(workdir, "cluster.yaml"), "w") as handle:
        handle.write("{}\n")
    os.chmod(os.path.join(workdir, "cluster.yaml"), 0o644)
    local = cluster(workdir)
    for path in (workdir, local.layout.log_dir, local.layout.socket_dir):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
    for path in paths_of(local).values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert set(as_user(NOBODY, NOGROUP, paths_of(local)).values()) == {"PermissionError"}


def test_the_blob_servers_serve_only_readers_with_the_clusters_token(make_cluster):
    import numpy as np

    import objects
    from vineyard_runtime.node.blob_server import BlobFetchError, BlobFetcher
    from vineyard_runtime.etcd_keys import endpoint_key
    from vineyard_runtime.etcd_client import EtcdClient

    local = make_cluster(nodes=2, size="64Mi")
    node = local.state.nodes[0]
    endpoint = EtcdClient(local.state.etcd.endpoint).get(
        endpoint_key(local.state.etcd_prefix, node.instance_id)).value.decode()
    stranger = as_user(NOBODY, NOGROUP, {"blobs": endpoint})["blobs"]
    assert stranger.startswith("ERR not authorized")
    with pytest.raises(BlobFetchError, match="not authorized"):
        BlobFetcher(endpoint, token="guessed").layout("o0000000000000001")
    with objects.connect(node.socket) as writer, objects.connect(local.state.nodes[1].socket) as reader:
        writer.put(np.arange(1 << 20), name="blobs/token-check")
        np.testing.assert_array_equal(reader.get("blobs/token-check"), np.arange(1 << 20))  # through the server


def test_the_sockets_themselves_refuse_another_user_even_in_an_open_directory(cluster, open_dir):
    local = cluster(os.path.join(open_dir, "w"))
    node = local.state.nodes[0]
    os.chmod(local.layout.workdir, 0o755)  # someone opened the folders up by hand
    os.chmod(local.layout.socket_dir, 0o755)
    assert as_user(NOBODY, NOGROUP, {"socket": node.socket})["socket"] == "PermissionError"


def test_a_group_shares_the_cluster_with_its_members_only(cluster, open_dir):
    group = grp.getgrgid(NOGROUP).gr_name
    local = cluster(os.path.join(open_dir, "w"), group=group)
    member = as_user(NOBODY, NOGROUP, paths_of(local))
    assert member == dict.fromkeys(paths_of(local), "allowed")
    stranger = as_user(NOBODY - 1, NOGROUP - 1, paths_of(local))  # a uid and gid of no one here
    assert set(stranger.values()) == {"PermissionError"}
    assert os.stat(local.state.nodes[0].socket).st_gid == NOGROUP
    holds = local.state.nodes[0].socket + ".holds"
    assert stat.S_IMODE(os.stat(holds).st_mode) & 0o070 == 0o070 and os.stat(holds).st_gid == NOGROUP


def test_a_socket_directory_planted_by_another_user_is_refused(open_dir):
    workdir = os.path.join(open_dir, "a" * 120)  # too long for socket paths: they go under /tmp
    local = LocalCluster(nodes=1, size="64Mi", workdir=workdir)
    planted = local.layout.socket_dir
    assert planted == os.path.join(tempfile.gettempdir(),
                                   f"fluidv-{hashlib.sha1(workdir.encode()).hexdigest()[:12]}")
    os.makedirs(planted)
    os.chown(planted, NOBODY, NOGROUP)
    try:
        done = subprocess.run([sys.executable, "-m", "fluid_core.cli", "cluster", "up", "--workdir", workdir,
                               "--nodes", "1", "--size", "64Mi"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1
        assert f"{planted} belongs to uid {NOBODY}, not to you" in done.stderr
        assert not local.running() and not os.path.exists(local.layout.state_file)
    finally:
        shutil.rmtree(planted, ignore_errors=True)


def test_an_unknown_group_is_refused_before_anything_starts(open_dir):
    with pytest.raises(InvalidSpec, match="no such group"):
        LocalCluster(nodes=1, size="64Mi", workdir=os.path.join(open_dir, "w"), group="no-such-group-here")
    assert not os.path.exists(os.path.join(open_dir, "w"))
