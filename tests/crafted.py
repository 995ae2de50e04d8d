"""Objects a hostile writer could plant: decoding them the way vineyard does runs code
(each creates the file ``marker`` when unpickled)."""

from __future__ import annotations

import pickle

import numpy as np

from objects.codecs.base import meta_fields
from objects.directory import Entry
from vineyard_runtime.object_ids import object_name


class Planted:
    """Unpickling it creates ``marker``: the proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _blob(client, payload: bytes):
    builder = client.create_blob(len(payload))
    np.frombuffer(memoryview(builder), dtype=np.uint8)[:] = np.frombuffer(payload, dtype=np.uint8)
    return builder.seal(client)


def pickle_buffer(client, marker) -> object:
    """What plain vineyard writes for any Python value: a ``vineyard::PickleBuffer``."""
    return client.put(Planted(str(marker)))


def object_tensor(client, marker) -> object:
    """A ``vineyard::Tensor`` of ``object`` values, which vineyard resolves with pickle."""
    import vineyard

    payload = pickle.dumps(Planted(str(marker)))
    meta = vineyard.ObjectMeta()
    meta["typename"] = "vineyard::Tensor<object>"
    meta["value_type_"] = "object"
    meta["shape_"] = "[1]"
    meta["order_"] = '"C"'
    meta["partition_index_"] = "[]"
    meta["nbytes"] = len(payload)
    meta.add_member("buffer_", _blob(client, payload))
    return client.create_metadata(meta).id


def hidden_in_nested(client, marker) -> object:
    """An object of our own layout (a dict) whose one member is a PickleBuffer."""
    import vineyard

    meta = vineyard.ObjectMeta()
    for key, value in meta_fields("Nested", {"structure": {"t": "d", "k": [["s", "w"]], "v": [{"t": "m", "m": 0}]}},
                                  0, {}).items():
        meta[key] = value
    meta.add_member("m0", pickle_buffer(client, marker))
    return client.create_metadata(meta).id


def entry_of(store, meta) -> Entry:
    """A directory entry naming the Vineyard object ``meta`` of ``store``'s node, as a
    writer of etcd (or a client of Vineyard's own) could make one."""
    return Entry(id=object_name(meta.id), typename=str(meta.typename), nbytes=int(meta.nbytes),
                 instance_id=int(meta.instance_id), node=store.node)
