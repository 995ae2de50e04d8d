"""The kept-alive HTTP/1.1 connection of the etcd client, against a peer that answers as
scripted: framing (length, chunks, to the end), a server that closes an idle connection,
one that closes or stalls mid-answer, and garbage."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from vineyard_runtime.plumbing.http1 import Connection, HTTPError, StaleConnection


class Peer:
    """A TCP server on loopback that serves each accepted connection with ``script``
    (given the socket and the request count so far on that connection)."""

    def __init__(self, script: Callable[[socket.socket, int], bool]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script, self.requests, self.connections = script, [], 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                count = 0
                while True:
                    request = _read_request(conn)
                    if request is None:
                        break
                    self.requests.append(request)
                    count += 1
                    if not self.script(conn, count):
                        break

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (closing alone would not)
        self.thread.join()
        self.listener.close()


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += conn.recv(65536)
    return body


@pytest.fixture
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    server = Peer(request.param)
    try:
        yield server
    finally:
        server.close()


def answer(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers) or f"Content-Length: {len(body)}\r\n"
    return f"HTTP/1.1 200 OK\r\n{head}\r\n".encode() + body


def keep_alive(conn: socket.socket, count: int) -> bool:
    conn.sendall(answer(b'{"n": %d}' % count))
    return True


def one_per_connection(conn: socket.socket, count: int) -> bool:
    conn.sendall(answer(b"{}"))
    return False  # an idle kept-alive connection that the server closes


@pytest.mark.parametrize("peer", [keep_alive], indirect=True)
def test_requests_share_one_connection(peer: Peer) -> None:
    connection = Connection("127.0.0.1", peer.port, timeout=5)
    assert [connection.post("/a", b"x" * n) for n in (1, 70000)] == [(200, b'{"n": 1}'), (200, b'{"n": 2}')]
    assert peer.requests == [b"x", b"x" * 70000] and peer.connections == 1
    connection.close()


@pytest.mark.parametrize("peer", [one_per_connection], indirect=True)
def test_a_connection_the_server_closed_is_reported_stale_then_reopened(peer: Peer) -> None:
    connection = Connection("127.0.0.1", peer.port, timeout=5)
    assert connection.post("/a", b"1") == (200, b"{}")
    with pytest.raises(StaleConnection):  # the caller may send again: nothing was answered
        connection.post("/a", b"2")
    assert connection.post("/a", b"3") == (200, b"{}")
    assert peer.connections == 2
    connection.close()


def chunked(conn: socket.socket, count: int) -> bool:
    conn.sendall(answer(b"4\r\n{\"a\"\r\n4;x=y\r\n: 1}\r\n0\r\nTrailer: z\r\n\r\n", "Transfer-Encoding: chunked"))
    return True


def to_the_end(conn: socket.socket, count: int) -> bool:
    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n{\"old\": true}")
    return False


@pytest.mark.parametrize("peer", [chunked], indirect=True)
def test_a_chunked_answer_is_joined(peer: Peer) -> None:
    connection = Connection("127.0.0.1", peer.port, timeout=5)
    assert connection.post("/a", b"") == (200, b'{"a": 1}')
    assert connection.post("/a", b"") == (200, b'{"a": 1}')  # still the same connection
    assert peer.connections == 1
    connection.close()


@pytest.mark.parametrize("peer", [to_the_end], indirect=True)
def test_an_answer_without_length_runs_to_the_end_and_closes(peer: Peer) -> None:
    connection = Connection("127.0.0.1", peer.port, timeout=5)
    assert connection.post("/a", b"") == (200, b'{"old": true}')
    assert connection.post("/a", b"") == (200, b'{"old": true}')  # on a new connection: no stale error
    assert peer.connections == 2


def cut_in_body(conn: socket.socket, count: int) -> bool:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"half")
    return False


def garbage(conn: socket.socket, count: int) -> bool:
    conn.sendall(b"SSH-2.0-OpenSSH\r\n")
    return False


def silent(conn: socket.socket, count: int) -> bool:
    conn.recv(1)  # waits until the client gives up and closes
    return False


@pytest.mark.parametrize(("peer", "message"), [(cut_in_body, "closed after 6 of 100 bytes"),
                                              (garbage, "not an HTTP/1.1 answer"),
                                              (silent, "timed out")], indirect=["peer"])
def test_a_broken_answer_is_an_error_never_a_hang_nor_a_retry(peer: Peer, message: str) -> None:
    connection = Connection("127.0.0.1", peer.port, timeout=0.5)
    with pytest.raises(HTTPError, match=message) as raised:
        connection.post("/a", b"")
    assert not isinstance(raised.value, StaleConnection)


def test_nothing_listening_is_an_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(HTTPError, match="refused"):
        Connection("127.0.0.1", port, timeout=1).post("/a", b"")
