"""Where a cluster keeps each named object: its object directory (``objects.directory``),
read in one range request whatever the number of objects, never Vineyard's own metadata.

The directory's key layout and entry format are ``objects.directory``'s alone; this
module only asks it, and skips entries it cannot read (written by another version).
"""

from __future__ import annotations

from vineyard_runtime.spec import DEFAULT_ETCD_PREFIX


def read_directory(etcd_endpoint: str, timeout: float = 2.0, etcd_prefix: str = DEFAULT_ETCD_PREFIX,
                   ) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """(``{name: {node: nbytes}}``, ``{name: object id}``) of every named object of the
    cluster whose etcd answers at ``etcd_endpoint``, from one read (a re-put name gets a
    new id)."""
    from objects.directory import Directory, Entry  # noqa: PLC0415
    from vineyard_runtime.etcd_client import EtcdClient  # noqa: PLC0415

    directory = Directory(EtcdClient(etcd_endpoint, timeout=timeout), etcd_prefix)
    base = directory.key("")
    located: dict[str, dict[str, int]] = {}
    ids: dict[str, str] = {}
    kvs, _ = directory.etcd.range(base)
    for kv in kvs:
        try:
            entry = Entry.from_json(kv.value, kv.mod_revision)
        except (ValueError, KeyError, TypeError):
            continue
        name = kv.key[len(base):]
        located[name], ids[name] = {entry.node: entry.nbytes}, entry.id
    return located, ids


def read_locations(etcd_endpoint: str, timeout: float = 2.0,
                   etcd_prefix: str = DEFAULT_ETCD_PREFIX) -> dict[str, dict[str, int]]:
    """``{name: {node: nbytes}}`` of the cluster whose etcd answers at ``etcd_endpoint``."""
    return read_directory(etcd_endpoint, timeout, etcd_prefix)[0]


def named_ids(etcd_endpoint: str, timeout: float = 2.0, etcd_prefix: str = DEFAULT_ETCD_PREFIX) -> dict[str, str]:
    """``{name: object id}`` of every named object (a re-put name gets a new id)."""
    return read_directory(etcd_endpoint, timeout, etcd_prefix)[1]
