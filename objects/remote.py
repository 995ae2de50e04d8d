"""Reading objects that other nodes hold, and freeing the copies this node received.

Three ways, fastest first: a blob server of the holding node sends an object's layout
and blobs, which land in new blobs of this node and are recorded as this node's copy
(``fluidv/replicas/``); chunks of streams come the same way into this process; where no
blob server is published, the holder publishes the object over Vineyard's RPC and
Vineyard migrates it (about 0.1 s per object), or single blobs are copied over RPC.
"""

from __future__ import annotations

import collections
import functools
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from objects.connection import quiet_stdout
from objects.directory import Entry
from objects.errors import ObjectNotFound, ObjectsError
from objects.layout import LayoutMeta, with_blob_ids
from vineyard_runtime.node.blob_server import BlobFetcher, BlobFetchError
from vineyard_runtime.node.layouts import shared_blobs
from vineyard_runtime.etcd_client import put_op, unchanged
from objects.vineyard_client import connect_once, import_vineyard
from vineyard_runtime.etcd_keys import doomed_key, endpoint_key, sweeper_key
from vineyard_runtime.object_ids import object_id

if TYPE_CHECKING:
    from objects.node import NodeConnection

_T = TypeVar("_T")

#: How often a reader asks another node to publish an object before giving up.
PERSIST_TRIES = 3


class Vanished(ObjectNotFound):
    """The object an entry pointed at was deleted meanwhile."""


class RemoteReads:
    """One store's connections to other nodes: blob servers and Vineyard RPC."""

    def __init__(self, store: "NodeConnection") -> None:
        self.store = store
        self._rpc: dict[str, Any] = {}
        self._blob_endpoints: dict[int, str | None] = {}
        self._fetchers: dict[str, BlobFetcher] = {}
        self._sweepers: set[int] = set()
        #: how this store's reads of other nodes' objects went: "blob server" (received
        #: into this node), "migration" (Vineyard's, over RPC)
        self.paths: collections.Counter[str] = collections.Counter()

    def forget_copies(self, entry: Entry) -> list[tuple[int, list[str]]]:
        """Drop the records of the copies other nodes received of ``entry``; return what
        to free: (instance, blob ids) of each copy."""
        directory = self.store.directory
        prefix = directory.replica_key(entry.id)
        kvs, _ = self.store.directory_call(lambda: directory.etcd.range(prefix))
        if kvs:
            self.store.directory_call(lambda: directory.etcd.delete_prefix(prefix))
        return [(int(kv.key.rsplit("/i", 1)[1]), shared_blobs(json.loads(kv.value))) for kv in kvs]

    def free(self, key: str, held: list[tuple[int, list[str]]]) -> None:
        """Free the objects or blobs ``(instance, ids)`` that object ``key`` holds on
        their nodes once nobody there reads it: on this node through its holds; on a
        node with a sweeper by asking it (in etcd); elsewhere at once over RPC. Best
        effort, and nothing for nodes that are gone (their memory went with them)."""
        directory = self.store.directory
        instances = functools.cache(lambda: self.store.directory_call(directory.instances))
        for instance_id, ids in held:
            try:
                if instance_id == self.store.instance_id and self.store.holds is not None:
                    self.store.holds.free(key, ids, self.store.delete_ids)
                elif instance_id == self.store.instance_id:
                    self.store.delete_ids(ids)
                elif instance_id not in instances():
                    continue
                elif self._swept(instance_id):
                    self.store.directory_call(lambda: directory.etcd.put(
                        doomed_key(directory.prefix, instance_id, key), json.dumps(ids)))
                else:  # no sweeper there (a Kubernetes worker): its readers are not protected
                    rpc = self.rpc_client(instances()[instance_id].rpc_endpoint)
                    rpc.delete([import_vineyard().ObjectID(i) for i in ids], force=False, deep=True)
            except (ObjectsError, OSError, RuntimeError):  # vineyard's errors are RuntimeErrors
                pass

    def _swept(self, instance_id: int) -> bool:
        """True when node ``instance_id`` runs a sweeper (kept once seen: the requests it
        is asked stay in etcd until it, or its successor, serves them)."""
        if instance_id not in self._sweepers:
            directory = self.store.directory
            if self.store.directory_call(lambda: directory.etcd.get(sweeper_key(directory.prefix, instance_id))) is None:
                return False
            self._sweepers.add(instance_id)
        return True

    def close(self) -> None:
        for fetcher in self._fetchers.values():
            fetcher.close()
        for rpc in self._rpc.values():
            try:
                rpc.close()
            except Exception:  # noqa: BLE001 - closing a dead connection is harmless
                pass

    def blob_reader(self, entry: Entry) -> Any:
        """How to read the blobs of ``entry``: in place on their node; else received in
        one request from the blob server of the node holding them; else (no server
        published) copied over Vineyard's RPC."""
        if self.store.is_ipc and entry.instance_id == self.store.instance_id:
            return self.store.node_blobs(entry.blobs, lambda: Vanished(entry.id))
        endpoint = self.blob_endpoint(entry.instance_id)
        if endpoint is not None:
            return dict(zip(entry.blobs, self._receive(entry, endpoint))).__getitem__
        rpc = self.store.client if not self.store.is_ipc else self.rpc_client(self.owner(entry).rpc_endpoint)
        vineyard = import_vineyard()
        return lambda blob_id: rpc.rpc_client.get_remote_blob(vineyard.ObjectID(blob_id))

    def fetch_blobs(self, entries: list[Entry]) -> dict[str, bytearray] | None:
        """The blobs of ``entries``, all held by one other node, in one request to its blob
        server (None when it publishes none)."""
        endpoint = self.blob_endpoint(entries[0].instance_id)
        if endpoint is None:
            return None
        ids = [blob for entry in entries for blob in entry.blobs]
        keys = ",".join(entry.id for entry in entries)
        return dict(zip(ids, self._from_server(entries[0], endpoint, lambda fetcher: fetcher.fetch(keys, ids))))

    def blob_endpoint(self, instance_id: int) -> str | None:
        """The blob server of ``instance_id``, or None where it publishes none."""
        if instance_id not in self._blob_endpoints:
            kv = self.store.directory_call(lambda: self.store.directory.etcd.get(endpoint_key(self.store.directory.prefix, instance_id)))
            self._blob_endpoints[instance_id] = kv.value.decode() if kv is not None else None
        return self._blob_endpoints[instance_id]

    def _receive(self, entry: Entry, endpoint: str) -> list[bytearray]:
        return self._from_server(entry, endpoint, lambda fetcher: fetcher.fetch(entry.id, entry.blobs))

    def layout(self, entry: Entry, name: str | None) -> LayoutMeta:
        """The value of layout entry ``entry`` with its blobs: a named value of another
        node through this node's copy of it (``replica``), else as ``blob_reader`` reads."""
        if name is not None and self.store.is_ipc and entry.instance_id != self.store.instance_id:
            endpoint = self.blob_endpoint(entry.instance_id)
            if endpoint is not None:
                return self.replica(entry, name, endpoint)
        assert entry.layout is not None
        return LayoutMeta.from_json(entry.layout, self.blob_reader(entry))

    def replica(self, entry: Entry, name: str, endpoint: str) -> LayoutMeta:
        """This node's copy of an object held by another node: the one received before
        (recorded in the directory), else received now from the holder's blob server
        straight into new blobs of this node, and recorded while ``name`` still holds it."""
        directory, ipc = self.store.directory, self.store.ipc
        key = directory.replica_key(entry.id, self.store.instance_id)
        kept = self.store.directory_call(lambda: directory.etcd.get(key))
        if kept is not None:
            layout = json.loads(kept.value)
            ids = shared_blobs(layout)
            found = ipc.get_blobs(object_id(blob) for blob in ids)
            if len(found) == len(set(ids)):
                return LayoutMeta.from_json(layout, lambda blob: found[object_id(blob)].data)
        ctx = self.store.blob_context(dict(entry.labels), allow_pickle=False)
        received: list[Any] = []

        def new_blob(size: int) -> Any:
            received.append(ctx.new_blob(size))
            return received[-1]

        try:
            if entry.layout is None:  # a Vineyard object: its layout comes with its blobs
                layout = self._from_server(entry, endpoint, lambda fetcher: fetcher.fetch_object(entry.id, new_blob))
            else:
                layout = entry.layout
                self._from_server(entry, endpoint, lambda fetcher: fetcher.fetch_into(entry.id, entry.blobs, new_blob))
            sealed = [ctx.seal(builder) for builder in received]
            self.store.flush_seals()
        except BaseException:
            for builder in received:
                ctx.abort(builder)
            raise
        mine = with_blob_ids(layout, {b: s.id for b, s in zip(shared_blobs(layout), sealed)})
        won, _ = self.store.directory_call(lambda: directory.etcd.txn([unchanged(directory.key(name), entry.revision)],
                                                         [put_op(key, json.dumps(mine))]))
        if not won:  # replaced or deleted meanwhile: this copy is nobody's to free but ours
            if self.store.holds is None:
                self.store.delete_ids([s.id for s in sealed])
                raise Vanished(entry.id)
            # the read holds the entry's pin: the copy goes when the last view of it does
            self.store.holds.free(entry.hold_key, [s.id for s in sealed], self.store.delete_ids)
        self.paths["blob server"] += 1
        views = {s.id: s.shared_view() for s in sealed}
        return LayoutMeta.from_json(mine, views.__getitem__)

    def _from_server(self, entry: Entry, endpoint: str, ask: Callable[[BlobFetcher], _T]) -> _T:
        """``ask(fetcher)`` on the blob server at ``endpoint``; its failures as ours."""
        try:
            fetcher = self._fetchers.get(endpoint) or self._fetchers.setdefault(
                endpoint, BlobFetcher(endpoint, token=self.store.target.blob_token()))
            return ask(fetcher)
        except BlobFetchError as exc:
            if "ObjectNotExists" in str(exc) or "MetaTreeSubtreeNotExists" in str(exc):
                self.owner(entry)  # its node restarted: say so
                raise Vanished(entry.id) from None
            if exc.answered and not str(exc).startswith("NodeUnavailable"):  # not its vineyardd being gone
                raise ObjectsError(f"node {entry.node}'s blob server could not send {entry.id}: {exc}") from None
            problem: OSError = exc
        except OSError as exc:
            problem = exc
        broken = self._fetchers.pop(endpoint, None)
        if broken is not None:
            broken.close()
        self.owner(entry)  # ObjectNotFound naming the node when it is gone
        raise ObjectNotFound(f"node {entry.node} holding {entry.id} does not answer: {problem}")

    def owner(self, entry: Entry) -> Any:
        """The registered instance holding ``entry``; ObjectNotFound when its node is gone."""
        owner = self.store.directory_call(self.store.directory.instances).get(entry.instance_id)
        if owner is None:
            raise ObjectNotFound(
                f"object {entry.id} was held by node {entry.node}, which is gone (its vineyardd "
                "stopped or restarted, and its memory with it); put the value again"
            )
        return owner

    def rpc_client(self, endpoint: str) -> Any:
        """A vineyard RPC client of ``endpoint``, opened once."""
        if endpoint not in self._rpc:

            host, _, port = endpoint.rpartition(":")
            with quiet_stdout():  # vineyard prints a line about RDMA on the process's stdout
                self._rpc[endpoint] = connect_once(host, int(port))
        return self._rpc[endpoint]

    def migrate_in(self, entry: Entry, object_id: Any) -> Any:
        """Move an object of another node here: its node publishes it to the cluster's
        metadata (only now that someone asks), then Vineyard migrates it."""
        owner = self.owner(entry)
        for attempt in range(PERSIST_TRIES):
            try:
                self.rpc_client(owner.rpc_endpoint).rpc_client.persist(object_id)
                break
            except (OSError, RuntimeError, ValueError) as exc:
                # seen once under load: the holder's metadata not yet showing a new object
                if attempt + 1 == PERSIST_TRIES:
                    raise ObjectNotFound(f"node {entry.node} holding {entry.id} could not publish it: {exc}") from None
                time.sleep(0.02)
        self.paths["migration"] += 1
        return self.store.migrate_here(self.store.client.get_meta(object_id, sync_remote=True))
