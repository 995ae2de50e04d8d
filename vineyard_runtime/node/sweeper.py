"""A node's sweeper: frees what the node's holds deferred (:mod:`vineyard_runtime.node.holds`).

Every half second it frees the objects deleted while they were read once their last
reader has let go (also a reader that was killed), the blobs of writers that died
before naming them, and what deletes on other nodes asked this node to free: those
deleters cannot see this node's pins, so they write ``fluidv/doomed/i<instance>/<key>``
in etcd instead of freeing at once, where a node publishes ``fluidv/sweepers/i<instance>``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from vineyard_runtime.etcd_client import EtcdClient, delete_op
from vineyard_runtime.node.ipc import VineyardIPC
from vineyard_runtime.plumbing.deadline import node_timeout
from vineyard_runtime.node.holds import NodeHolds
from vineyard_runtime.node.probe import Pinger
from vineyard_runtime.etcd_keys import doomed_key, name_key, sweeper_key

log = logging.getLogger("fluidv.sweeper")

SWEEP_EVERY = 0.5


class NodeSweeper:
    """The sweeper thread of one node (its socket; its current instance id, which a
    restart changes)."""

    def __init__(self, socket: str, etcd_endpoint: str, etcd_prefix: str,
                 instance_id: Callable[[], int | None]) -> None:
        self.socket, self.prefix = socket, etcd_prefix
        self.etcd = EtcdClient(etcd_endpoint)
        self._instance_id = instance_id
        self._client: VineyardIPC | None = None  # the node, through the protocol client
        self._pinger = Pinger(socket)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sweeper-{socket}", daemon=True)

    def start(self) -> "NodeSweeper":
        self._thread.start()
        return self

    def announce(self, instance_id: int) -> None:
        """Say in etcd that this sweeper serves node ``instance_id``: deletes on other
        nodes then ask it to free instead of freeing under this node's readers."""
        self.etcd.put(sweeper_key(self.prefix, instance_id), self.socket)

    def withdraw(self, instance_id: int) -> None:
        """Undo :meth:`announce` (deletes elsewhere then free over RPC at once)."""
        self.etcd.txn([], [delete_op(sweeper_key(self.prefix, instance_id))])

    def stop_soon(self) -> None:
        """Tell the thread to end after the round it is in (``stop`` waits for it)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.etcd.close()
        self._pinger.close()
        self._disconnect()

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _run(self) -> None:
        while not self._stop.wait(SWEEP_EVERY):
            try:
                self.sweep()
            except Exception as exc:  # noqa: BLE001 - a restarting node or etcd: next round
                log.debug("sweeping %s: %s", self.socket, exc)
                self._disconnect()

    def _named(self, name: str, entry_id: str) -> bool:
        kv = self.etcd.get(name_key(self.prefix, name))
        return kv is not None and json.loads(kv.value).get("id") == entry_id

    def sweep(self) -> int:
        """One round; how many objects or dead writes were freed."""
        holds = NodeHolds.for_socket(self.socket)
        instance_id = self._instance_id()
        if holds is None or instance_id is None:
            return 0
        asked = doomed_key(self.prefix, instance_id)
        requests = self.etcd.range(asked)[0]
        if not requests and not holds.has_work():
            return 0
        if not self._pinger.ping():  # stopped or restarting: a call would wait for its timeout
            return 0
        if self._client is None or self._client.instance_id != instance_id:  # restarted
            self._disconnect()
            self._client = VineyardIPC(self.socket, timeout=node_timeout())
        delete = self._client.discard
        for kv in requests:
            holds.free(kv.key[len(asked):], json.loads(kv.value), delete)
            self.etcd.txn([], [delete_op(kv.key)])  # the holds have it now
        return len(requests) + holds.sweep(delete, self._named)
