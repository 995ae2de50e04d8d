"""Every key the project keeps in a cluster's etcd, under the cluster's prefix (beside
vineyard's own keys there):

- ``fluidv/names/<name>``: a named object's entry (``objects.directory``);
- ``fluidv/replicas/<object id>/i<instance>``: the copy a node received of an object;
- ``fluidv/streams/<name>/<part>``: a stream's header, chunk records and end;
- ``fluidv/blobs/i<instance>``: where a node's blob server listens;
- ``fluidv/sweepers/i<instance>``: that a node's sweeper runs;
- ``fluidv/doomed/i<instance>/<key>``: what a delete elsewhere asks that node to free.
"""

from __future__ import annotations

NAMES = "fluidv/names/"
REPLICAS = "fluidv/replicas/"
STREAMS = "fluidv/streams/"


def _under(etcd_prefix: str, key: str) -> str:
    return f"{etcd_prefix.rstrip('/')}/{key}"


def name_key(etcd_prefix: str, name: str) -> str:
    """The entry of the object named ``name``."""
    return _under(etcd_prefix, NAMES + name)


def endpoint_key(etcd_prefix: str, instance_id: int) -> str:
    """Where the blob server of instance ``instance_id`` publishes its endpoint."""
    return _under(etcd_prefix, f"fluidv/blobs/i{instance_id}")


def sweeper_key(etcd_prefix: str, instance_id: int) -> str:
    """Where a node says its sweeper runs (deleters elsewhere then leave frees to it)."""
    return _under(etcd_prefix, f"fluidv/sweepers/i{instance_id}")


def doomed_key(etcd_prefix: str, instance_id: int, key: str = "") -> str:
    """Where a deleter on another node asks node ``instance_id`` to free object ``key``."""
    return _under(etcd_prefix, f"fluidv/doomed/i{instance_id}/{key}")


__all__ = ["NAMES", "REPLICAS", "STREAMS", "doomed_key", "endpoint_key", "name_key", "sweeper_key"]
