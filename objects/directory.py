"""The object directory: names of objects, kept in the cluster's etcd by this package.

One key per named object, ``<etcd prefix>/fluidv/names/<name>``, whose value (an
:class:`Entry`) says everything a reader needs: the object's id and the node holding
it and the value's layout: whole, for a small value, or referring to blobs of that
node's shared memory. Creating a name is one etcd transaction that succeeds only if
the key is absent, so exactly one of two writers wins, on one node or across nodes;
replacing and deleting compare the revision they read. Vineyard itself is not told
about names at all (see ``ObjectStore.get``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, replace
from typing import Any

from vineyard_runtime.node.layouts import shared_blobs
from vineyard_runtime.node.probe import instance_records
from vineyard_runtime.etcd_keys import NAMES, REPLICAS, STREAMS
from vineyard_runtime.etcd_client import (
    EtcdClient,
    EtcdUnavailable,
    absent,
    delete_op,
    put_op,
    range_request,
    unchanged,
)

@dataclass(frozen=True)
class Entry:
    """What the directory holds for one object."""

    id: str
    typename: str
    nbytes: int
    instance_id: int
    node: str
    labels: dict[str, str] = field(default_factory=dict)
    layout: dict[str, Any] | None = None  # the value: whole, or its blobs by id (None: a Vineyard object)
    revision: int = 0
    #: the key its readers pin and its deleters free under, when not its id (a stream's
    #: chunks share their stream's: a reader pins it once)
    hold: str | None = None

    @property
    def hold_key(self) -> str:
        return self.hold or self.id

    @functools.cached_property
    def blobs(self) -> list[str]:
        """Ids of the shared-memory blobs its layout refers to (none for inline values)."""
        return [] if self.layout is None else shared_blobs(self.layout)

    @property
    def on_node(self) -> bool:
        """True when the value lives in its node's shared memory (and dies with it)."""
        return self.layout is None or bool(self.blobs)

    def to_json(self) -> str:
        body: dict[str, Any] = {"id": self.id, "typename": self.typename, "nbytes": self.nbytes,
                                "instance": self.instance_id, "node": self.node, "labels": self.labels}
        if self.layout is not None:
            body["layout"] = self.layout
        if self.hold is not None:
            body["hold"] = self.hold
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str, revision: int) -> "Entry":
        return cls.from_body(json.loads(raw), revision)

    @classmethod
    def from_body(cls, body: dict[str, Any], revision: int) -> "Entry":
        return cls(id=body["id"], typename=body["typename"], nbytes=int(body["nbytes"]),
                   instance_id=int(body["instance"]), node=body["node"], labels=body.get("labels") or {},
                   layout=body.get("layout"), revision=revision, hold=body.get("hold"))


@dataclass(frozen=True)
class Instance:
    """A vineyardd registered in the cluster."""

    instance_id: int
    node: str
    rpc_endpoint: str


class Directory:
    """Names and stream records of one cluster, under ``prefix`` in its etcd."""

    def __init__(self, etcd: EtcdClient, prefix: str) -> None:
        self.etcd = etcd
        self.prefix = prefix.rstrip("/") + "/"

    def key(self, name: str) -> str:
        return self.prefix + NAMES + name

    def replica_key(self, entry_id: str, instance_id: int | None = None) -> str:
        """Where a node records the copy of object ``entry_id`` it received (its layout)."""
        return f"{self.prefix}{REPLICAS}{entry_id}/" + ("" if instance_id is None else f"i{instance_id}")

    def stream_key(self, name: str, part: str = "") -> str:
        return f"{self.prefix}{STREAMS}{name}/{part}"

    # -- names ---------------------------------------------------------------------

    def get(self, name: str) -> Entry | None:
        """The entry named ``name``, or None."""
        kv = self.etcd.get(self.key(name))
        return None if kv is None else Entry.from_json(kv.value, kv.mod_revision)

    def create(self, name: str, entry: Entry) -> Entry | None:
        """Name ``entry`` if the name is free: the stored entry, or None when taken."""
        key = self.key(name)
        won, revision = self.etcd.txn([absent(key)], [put_op(key, entry.to_json())])
        return replace(entry, revision=revision) if won else None

    def swap(self, name: str, entry: Entry, old: Entry | None) -> Entry | None:
        """Point ``name`` at ``entry`` if it still holds ``old`` (None: is still free)."""
        key = self.key(name)
        compare = absent(key) if old is None else unchanged(key, old.revision)
        won, revision = self.etcd.txn([compare], [put_op(key, entry.to_json())])
        return replace(entry, revision=revision) if won else None

    def remove(self, name: str, old: Entry) -> bool:
        """Drop ``name`` if it still holds ``old``."""
        key = self.key(name)
        return self.etcd.txn([unchanged(key, old.revision)], [delete_op(key)])[0]

    def entries(self, prefix: str = "") -> list[tuple[str, Entry]]:
        """(name, entry) of every name starting with ``prefix``, sorted by name."""
        base = self.key("")
        kvs, _ = self.etcd.range(base + prefix) if prefix else self.etcd.range(base)
        return [(kv.key[len(base):], Entry.from_json(kv.value, kv.mod_revision)) for kv in kvs]

    def changes(self, prefix: str, since: int) -> tuple[list[tuple[str, Entry]], int, int]:
        """What changed under names starting with ``prefix`` after revision ``since`` (0:
        everything): (name, entry) of each name put since, how many names there are now,
        and the revision this was read at. One request."""
        base, names = self.key(prefix), self.key("")
        (changed, total), revision = self.etcd.read([
            range_request(base, min_mod_revision=since + 1 if since else None),
            range_request(base, count_only=True)])
        return ([(kv.key[len(names):], Entry.from_json(kv.value, kv.mod_revision)) for kv in changed["kvs"]],
                total["count"], revision)

    def names(self, prefix: str, revision: int) -> set[str]:
        """The names starting with ``prefix`` as of ``revision`` (keys only)."""
        names = self.key("")
        (found,), _ = self.etcd.read([range_request(self.key(prefix), keys_only=True, revision=revision)])
        return {kv.key[len(names):] for kv in found["kvs"]}

    # -- the cluster's nodes --------------------------------------------------------

    def instances(self) -> dict[int, Instance]:
        """The live vineyardd of each node registered in the cluster, by instance id
        (of a node's several registrations, the newest)."""
        fields = instance_records(self.etcd, self.prefix)
        newest: dict[str, int] = {}  # a restarted node registers anew; its old record lingers a while
        for iid, f in fields.items():
            node = str(f.get("nodename") or f"instance-{iid}")
            newest[node] = max(newest.get(node, -1), iid)
        return {iid: Instance(iid, node, str(fields[iid].get("rpc_endpoint") or ""))
                for node, iid in newest.items()}


def open_directory(target: Any) -> Directory | None:
    """The directory of the cluster ``target`` (a connection Target) belongs to, if known."""
    settings = target.directory_settings()
    if settings is None:
        return None
    endpoint, prefix = settings
    return Directory(EtcdClient(endpoint), prefix)


__all__ = ["Directory", "EtcdUnavailable", "Entry", "Instance", "open_directory"]
