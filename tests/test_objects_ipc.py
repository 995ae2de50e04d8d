"""The project's own client of vineyardd's IPC protocol (``objects.ipc``) against a real
vineyardd: blobs made, sealed and read back (also by vineyard's own client), several in
one round trip, its errors, threads sharing one connection, and a daemon that is killed,
stopped, or (a socket of the test's own) answers garbage mid-call or as another version."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading

import numpy as np
import pytest
from support.stopping import stop

from objects import ObjectNotFound, ObjectsError, StoreFull, StoreUnavailable
from objects.ipc import EMPTY_BLOB, VineyardIPC
from support.optional import vineyard_client_installed


@pytest.fixture
def node(make_cluster):
    return make_cluster(nodes=1, size="64Mi").state.nodes[0]


def test_metadata_is_created_listed_published_and_deleted(node):
    """What the local cluster's probes and status ask: an object's metadata made, listed
    by type, published to etcd, read back (from the cluster too), the cluster's instances."""
    with VineyardIPC(node.socket, timeout=10) as ipc:
        blob = ipc.create_blob(64)
        ipc.seal([blob.id])
        tree = {"typename": "fluidv::Probe", "instance_id": ipc.instance_id, "transient": True, "nbytes": 64,
                "answer": 42, "data": {"typename": "vineyard::Blob", "id": blob.name, "instance_id": ipc.instance_id,
                                       "transient": True, "nbytes": 64}}
        made, _ = ipc.create_data(tree)
        listed = ipc.list_data("fluidv::*")
        assert set(listed) == {made} and listed[made]["answer"] == 42
        ipc.persist(made)
        assert ipc.get_data([made], sync_remote=True)[made]["transient"] is False
        assert set(ipc.cluster_meta()) == {ipc.instance_id}
        assert ipc.cluster_meta()[ipc.instance_id]["ipc_socket"] == node.socket
        ipc.delete([made])
        assert ipc.list_data("fluidv::*") == {} and ipc.get_data([blob.id]) == {}, "deep: the blob went too"


def test_blobs_are_made_sealed_and_read_back_zero_copy(node):
    with VineyardIPC(node.socket, timeout=10) as writer:
        blobs = writer.create_blobs([1024, 4096, 0])
        for index, blob in enumerate(blobs):
            np.frombuffer(blob.data, np.uint8)[:] = index + 1
        writer.seal(b.id for b in blobs)
        assert blobs[2].id == EMPTY_BLOB and blobs[2].data.nbytes == 0
        with VineyardIPC(node.socket, timeout=10) as reader:
            got = reader.get_blobs([blobs[0].id, blobs[1].id])
            assert got[blobs[0].id].data.readonly and bytes(got[blobs[0].id].data) == b"\x01" * 1024
            assert bytes(got[blobs[1].id].data) == b"\x02" * 4096
            assert reader.instance_id == writer.instance_id
            assert reader.instance_status()["memory_usage"] >= 5120
        if vineyard_client_installed():  # the same bytes through vineyard's own client
            import vineyard

            client = vineyard.connect(node.socket)
            try:
                assert bytes(memoryview(client.get_blob(vineyard.ObjectID(blobs[1].id)))) == b"\x02" * 4096
            finally:
                client.close()
        writer.delete(b.id for b in blobs[:2])
        assert writer.get_blobs([blobs[0].id]) == {}, "a missing blob is absent, not an error"


def test_many_blobs_take_one_round_trip_each_way(node):
    with VineyardIPC(node.socket, timeout=10) as ipc:
        before = ipc.instance_status()["memory_usage"]
        blobs = ipc.create_blobs([4096] * 200)
        ipc.seal(b.id for b in blobs)
        assert len({b.id for b in blobs}) == 200
        assert ipc.instance_status()["memory_usage"] >= before + 200 * 4096
        ipc.delete(b.id for b in blobs)
        assert ipc.instance_status()["memory_usage"] == before


def test_a_deferred_seal_goes_with_the_next_request(node):
    with VineyardIPC(node.socket, timeout=10) as writer, VineyardIPC(node.socket, timeout=10) as reader:
        first = writer.create_blob(4096)
        writer.seal([first.id], wait=False)
        with pytest.raises(ObjectsError, match="code 14"):  # not sealed: vineyardd was not told yet
            reader.get_blobs([first.id])
        second = writer.create_blob(4096)  # the seal of the first rides with this request
        assert set(reader.get_blobs([first.id])) == {first.id}
        writer.seal([second.id], wait=False)
        writer.flush()
        assert set(reader.get_blobs([first.id, second.id])) == {first.id, second.id}
        writer.flush()  # nothing waits: no request at all
        writer.seal([123456789], wait=False)  # no such blob: said by the request it went with
        with pytest.raises(ObjectNotFound, match="seal"):
            writer.instance_status()
        assert writer.instance_status()["instance_id"] == writer.instance_id, "the connection goes on"


def test_a_delete_asked_while_the_connection_waits_goes_with_the_next_request(node):
    """A zero-copy view's last reference can die inside a call on the same thread (a
    garbage collection run by the call's own allocations), and its pin's release then
    deletes what a delete left: that delete must not wait for the connection its own
    thread holds (it would never end), and must still happen."""
    with VineyardIPC(node.socket, timeout=10) as ipc:
        before = ipc.instance_status()["memory_usage"]
        doomed = ipc.create_blob(1 << 20)
        ipc.seal([doomed.id])
        receive, asked = ipc._receive, []

        def receive_then_finalize(count: int) -> bytes:
            if not asked:  # as a finalizer would, mid-call
                asked.append(True)
                ipc.delete([doomed.id])
                ipc.delete([987654321])  # already gone: its error is nobody's to raise
            return receive(count)

        ipc._receive = receive_then_finalize
        assert ipc.instance_status()["memory_usage"] >= before + (1 << 20), "not yet: it waits for a request"
        ipc._receive = receive
        assert set(ipc.get_blobs([doomed.id])) == set(), "gone with the next request"
        assert ipc.instance_status()["memory_usage"] == before


def test_errors_say_what_vineyardd_refused(node):
    with VineyardIPC(node.socket, timeout=10) as ipc:
        with pytest.raises(ObjectNotFound, match="seal"):
            ipc.seal([0x8000000000000123 | (1 << 62)])
        with pytest.raises(StoreFull, match="out of memory"):
            ipc.create_blob(1 << 40)
        assert ipc.create_blob(16).data.nbytes == 16, "the connection goes on after a refusal"
    with pytest.raises(StoreUnavailable, match="no vineyardd answers"):
        VineyardIPC(node.socket + ".missing", timeout=1)


def test_threads_share_one_connection(node):
    failures: list[BaseException] = []
    with VineyardIPC(node.socket, timeout=30) as ipc:

        def work(mark: int) -> None:
            try:
                for _ in range(50):
                    (blob,) = ipc.create_blobs([256])
                    np.frombuffer(blob.data, np.uint8)[:] = mark
                    ipc.seal([blob.id])
                    assert bytes(ipc.get_blobs([blob.id])[blob.id].data) == bytes([mark]) * 256
                    ipc.delete([blob.id])
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(mark,)) for mark in range(1, 5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, failures


def test_a_killed_daemon_fails_the_call(make_cluster):
    local = make_cluster(nodes=1, size="64Mi")
    node = local.state.nodes[0]
    ipc = VineyardIPC(node.socket, timeout=10)
    assert node.pid is not None
    os.kill(node.pid, signal.SIGKILL)
    with pytest.raises(StoreUnavailable, match="broke"):
        for _ in range(1000):  # the first calls may still be answered by the dying process
            ipc.create_blob(16)
    with pytest.raises(StoreUnavailable, match="closed"):
        ipc.instance_status()


def test_a_stopped_daemon_fails_the_call_at_its_timeout(make_cluster):
    local = make_cluster(nodes=1, size="64Mi")
    node = local.state.nodes[0]
    ipc = VineyardIPC(node.socket, timeout=0.5)
    assert node.pid is not None
    stop(node.pid)
    try:
        with pytest.raises(StoreUnavailable, match="did not answer within 0.5 s"):
            ipc.instance_status()
    finally:
        os.kill(node.pid, signal.SIGCONT)
    with VineyardIPC(node.socket, timeout=10) as again:  # a new connection once it goes on
        assert again.instance_status()["instance_id"] == ipc.instance_id


@contextlib.contextmanager
def fake_vineyardd(tmp_path, register: dict, then):
    """A socket of the test's own that answers one connection's register with
    ``register``, then does ``then(connection)``; its path."""
    path = str(tmp_path / "fake.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(1 << 16)
            body = json.dumps(dict(register, type="register_reply")).encode()
            conn.sendall(len(body).to_bytes(8, "little") + body)
            then(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        thread.join(10)
        server.close()


REGISTERED = {"instance_id": 7, "store_match": True, "version": "0.24.2"}


def test_garbage_mid_call_breaks_the_connection_not_the_caller(tmp_path):
    def garbage(conn) -> None:
        conn.recv(1 << 16)
        conn.sendall((5).to_bytes(8, "little") + b"{nope")

    with fake_vineyardd(tmp_path, REGISTERED, garbage) as path:
        ipc = VineyardIPC(path, timeout=10)
        assert ipc.instance_id == 7
        with pytest.raises(StoreUnavailable, match="broke"):
            ipc.instance_status()


@pytest.mark.parametrize("version", ["0.23.1", None])
def test_a_vineyardd_of_another_version_is_refused_at_connect(tmp_path, version):
    register = {k: v for k, v in REGISTERED.items() if k != "version"}
    if version is not None:
        register["version"] = version
    with fake_vineyardd(tmp_path, register, lambda conn: conn.recv(1 << 16)) as path:  # the client hangs up
        with pytest.raises(StoreUnavailable, match=f"is version {version or '.not said.'}, and this client "
                                                   "speaks the protocol of vineyardd 0.24.x"):
            VineyardIPC(path, timeout=10)
