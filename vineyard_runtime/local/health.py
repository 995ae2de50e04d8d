"""Whether the nodes of a local cluster answer, and whether they reach etcd again
after it restarted: threads that watch, never the supervisor's loop itself."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable

from vineyard_runtime.errors import VineyardRuntimeError
from vineyard_runtime.node.probe import Pinger, connect_ipc

log = logging.getLogger("fluidv.supervisor")

LIVENESS_EVERY = 1.0
#: seconds a write probe waits for vineyardd (a probe that times out is tried again)
PROBE_TIMEOUT = 30.0
#: the type name of the metadata object a write probe publishes and deletes
PROBE_TYPENAME = "fluidv::WriteProbe"


class Liveness:
    """Pings one node every second, in a thread (``Pinger``); ``silent()`` is how long the node has
    not answered (a stopped vineyardd still accepts connections, so only an answer counts)."""

    def __init__(self, node: str, socket: str) -> None:
        self.node, self.socket = node, socket
        self.answered = time.monotonic()
        self._stop = threading.Event()
        threading.Thread(target=self._run, name=f"liveness-{node}", daemon=True).start()

    def silent(self) -> float:
        return time.monotonic() - self.answered

    def reset(self) -> None:
        self.answered = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        pinger = Pinger(self.socket, timeout=LIVENESS_EVERY)
        while not self._stop.wait(LIVENESS_EVERY):
            if pinger.ping():
                self.answered = time.monotonic()
        pinger.close()


class WriteProbe:
    """Persists and deletes a tiny object on one node, in a thread.

    After etcd restarts, vineyardd answers reads at once but blocks metadata writes
    (and fails migrations) until its own etcd client reconnects, about 20 s later;
    a completed write is the sign that the node is usable again.
    """

    def __init__(self, node: str, socket: str) -> None:
        self.node, self.socket = node, socket
        self.ok = False
        self.done = False
        threading.Thread(target=self._run, name=f"probe-{node}", daemon=True).start()

    def _run(self) -> None:
        try:
            with connect_ipc(self.socket, node=self.node, timeout=PROBE_TIMEOUT) as ipc:
                oid, _ = ipc.create_data({"typename": PROBE_TYPENAME, "instance_id": ipc.instance_id,
                                          "transient": True, "nbytes": 0})
                try:
                    ipc.persist(oid)  # vineyardd writes to etcd: it has reconnected
                    self.ok = True
                finally:
                    with contextlib.suppress(VineyardRuntimeError):  # a closed connection: left, metadata only
                        ipc.delete([oid])
        except Exception as exc:  # noqa: BLE001 - not reconnected yet; tried again next tick
            log.info("%s: write probe failed: %s", self.node, exc)
        finally:
            self.done = True


class Reconnects:
    """The nodes that have not yet reached etcd again since it restarted, each tried
    with one write probe at a time."""

    def __init__(self) -> None:
        self.waiting: set[str] = set()
        self._probes: dict[str, WriteProbe] = {}

    def __bool__(self) -> bool:
        return bool(self.waiting)

    def begin(self, nodes: Iterable[str]) -> None:
        """etcd restarted: every one of ``nodes`` must reconnect."""
        self.waiting = set(nodes)

    def discard(self, node: str) -> None:
        """``node`` restarted, so it reached etcd when it registered."""
        self.waiting.discard(node)

    def check(self, sockets: dict[str, str]) -> list[str]:
        """Probe the waiting nodes among ``sockets`` (the running ones, by name); the
        nodes whose probe passed since the last call, no longer waiting."""
        back = []
        for node, socket in sockets.items():
            if node not in self.waiting:
                continue
            probe = self._probes.get(node)
            if probe is None:
                self._probes[node] = WriteProbe(node, socket)
            elif probe.done:
                del self._probes[node]
                if probe.ok:
                    self.waiting.discard(node)
                    back.append(node)
        return back


__all__ = ["LIVENESS_EVERY", "Liveness", "Reconnects", "WriteProbe"]
