"""Commands sharing one local cluster: a cluster a command started stays up while any uses it.

``fluidv run`` starts a cluster when none runs in its workdir. Another run may then use
the same cluster, so the run that started it must not stop it under the other. Each
user holds an exclusive ``flock`` on ``<workdir>/users/<pid>-<n>.use`` while it lives (a
killed user's file can be locked, so it no longer counts), and a cluster started for a
command carries the marker ``users/started-by-command``: the last user to leave stops
it. A cluster started with ``fluidv cluster up`` has no marker and stays up.
Joining and leaving take ``users/users.lock``, so two commands never both start one.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
from collections.abc import Callable, Iterator

_USES = itertools.count()


class ClusterUsers:
    """The users of the cluster in ``workdir``."""

    def __init__(self, workdir: str) -> None:
        self.path = os.path.join(os.path.abspath(workdir), "users")
        self.marker = os.path.join(self.path, "started-by-command")
        self._fd: int | None = None
        self._file = os.path.join(self.path, f"{os.getpid()}-{next(_USES)}.use")

    @contextlib.contextmanager
    def deciding(self) -> Iterator[None]:
        """Hold the lock under which users join and leave (and start or stop the cluster)."""
        os.makedirs(self.path, mode=0o700, exist_ok=True)  # the cluster's start sets its sharing
        with open(os.path.join(self.path, "users.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def join(self, started: bool) -> None:
        """Count this process as a user (inside :meth:`deciding`); ``started``: it has just
        started the cluster, which then stops when its last user leaves."""
        self._fd = os.open(self._file, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        if started:
            open(self.marker, "w").close()

    def others(self) -> int:
        """How many other live users there are (dead users' files are removed)."""
        alive = 0
        for name in os.listdir(self.path):
            path = os.path.join(self.path, name)
            if not name.endswith(".use") or path == self._file:
                continue
            with open(path) as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    alive += 1
                    continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return alive

    def leave(self, stop: Callable[[], None]) -> bool:
        """Stop counting this process; run ``stop`` when it was the last user of a cluster
        a command started. True when it stopped the cluster."""
        with self.deciding():
            if self._fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._file)
                os.close(self._fd)
                self._fd = None
            if not os.path.exists(self.marker) or self.others():
                return False
            stop()
            os.unlink(self.marker)
            return True
