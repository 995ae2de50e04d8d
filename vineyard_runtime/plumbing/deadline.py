"""Deadlines on calls to a node: a stopped vineyardd fails its clients instead of hanging them.

vineyard's IPC client waits for a reply forever (it retries a socket timeout itself,
and keeps the GIL meanwhile). So each store call runs under a deadline
(``$FLUIDV_NODE_TIMEOUT`` seconds, 30 by default) kept by a small watchdog process,
started at the first call: a call still waiting when its deadline passes has its
connection shut down, which ends vineyard's wait with an error, and the caller gets
``NodeUnavailable`` (``objects`` raises its own subclass). The connection is then dead:
connect again once the node answers (the local cluster restarts a node that stays
unresponsive). A call costs two short writes to the watchdog's pipe.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from vineyard_runtime.errors import NodeUnavailable

TIMEOUT_ENV = "FLUIDV_NODE_TIMEOUT"
DEFAULT_TIMEOUT = 30.0


def node_timeout() -> float:
    """Seconds a call to a node may take (``$FLUIDV_NODE_TIMEOUT``)."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise NodeUnavailable(f"${TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    return value if value > 0 else DEFAULT_TIMEOUT


def connections_to(path: str) -> list[int]:
    """File descriptors of this process's Unix sockets connected to ``path`` (or to
    where it links: a peer's name is the path its server bound)."""
    paths = {path, os.path.realpath(path)}
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=int(name))
        except OSError:
            continue
        try:
            if sock.family == socket.AF_UNIX and sock.getpeername() in paths:
                found.append(int(name))
        except OSError:
            pass
        finally:
            sock.detach()
    return found


#: The watchdog: a separate process, because vineyard's calls keep the GIL while they
#: wait, so no thread of the waiting process could run. It holds duplicates of the
#: connections and shuts them down (which the waiting call sees) when a deadline passes;
#: it exits when the store's end of its pipe closes.
_WATCHDOG = r"""
import os, select, socket, sys, time
fds, armed, pending = [int(f) for f in sys.argv[1].split(",") if f], {}, b""
while True:
    now = time.monotonic()
    wait = max(0.0, min(armed.values()) - now) if armed else None
    if select.select([0], [], [], wait)[0]:
        data = os.read(0, 65536)
        if not data:
            sys.exit(0)
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            what, token, *rest = line.split()
            if what == b"a":
                armed[token] = time.monotonic() + float(rest[0])
            else:
                armed.pop(token, None)
    if any(due <= time.monotonic() for due in armed.values()):
        for fd in fds:
            try:
                socket.socket(fileno=fd).shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        sys.exit(0)
"""


class Deadline:
    """The deadline of calls through one IPC connection (to the socket ``path``)."""

    def __init__(self, path: str, node: str, seconds: float | None = None,
                 error: type[NodeUnavailable] = NodeUnavailable) -> None:
        self.path, self.node, self.error = path, node, error
        self.seconds = node_timeout() if seconds is None else seconds
        self.broken = False
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._tokens = itertools.count()

    def _tell(self, line: str) -> None:
        with self._lock:
            if self._watchdog is None:  # the connections open now: the first call comes after them
                fds = connections_to(self.path)
                self._watchdog = subprocess.Popen(
                    [sys.executable, "-S", "-c", _WATCHDOG, ",".join(map(str, fds))],
                    stdin=subprocess.PIPE, pass_fds=fds, close_fds=True)
            assert self._watchdog.stdin is not None
            os.write(self._watchdog.stdin.fileno(), line.encode())

    def close(self) -> None:
        """Stop the watchdog (it exits when its pipe closes)."""
        with self._lock:
            if self._watchdog is not None:
                self._watchdog.stdin.close()  # type: ignore[union-attr]
                self._watchdog.wait()
                self._watchdog = None

    def expired(self, what: str) -> NodeUnavailable:
        """The error of a call (``what``) that outlived the deadline; the connection is
        broken from now on."""
        self.broken = True
        return self.error(
            f"node {self.node} did not answer {what} within {self.seconds:g}s "
            f"(${TIMEOUT_ENV}); it may be stopped or overloaded: check `fluidv cluster status`"
        )

    @contextlib.contextmanager
    def call(self, what: str, *, watchdog: bool = True) -> Iterator[None]:
        """Run the block under the deadline; NodeUnavailable when it passed. Without
        ``watchdog`` the block keeps the deadline itself (its waits end at ``seconds``,
        and it raises ``expired`` when one did): only a broken connection is refused."""
        if self.broken:
            raise self.error(f"the connection to node {self.node} was closed after it stopped "
                             "answering; connect again")
        if not watchdog:
            yield
            return
        token = next(self._tokens)
        self._tell(f"a {token} {self.seconds}\n")
        began = time.monotonic()
        try:
            yield
        except BaseException:
            if time.monotonic() - began >= self.seconds:
                raise self.expired(what) from None
            raise
        finally:
            if not self.broken:
                self._tell(f"d {token}\n")
        if time.monotonic() - began >= self.seconds:  # answered just as it was cut
            self.broken = True
