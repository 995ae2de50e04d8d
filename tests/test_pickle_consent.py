"""No code runs without consent: an object whose decoding would unpickle is refused
unless the reader passed ``allow_pickle=True``, however deep it hides and whoever reads
it (``store.get``, a flow step, a DataBackup)."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import objects
from crafted import entry_of, hidden_in_nested, object_tensor, pickle_buffer
from fluid_core.flow import LocalRunner
from fluid_core.models import parse
from objects.errors import UnsupportedType

API = "data.fluid.io/v1alpha1"


@pytest.fixture
def store(shared_cluster):
    with objects.connect(shared_cluster.nodes[0].socket) as connected:
        yield connected


@pytest.fixture
def marker(tmp_path):
    return tmp_path / f"ran-{uuid.uuid4().hex}"


CRAFTED = [pickle_buffer, object_tensor, hidden_in_nested]


@pytest.mark.parametrize("craft", CRAFTED, ids=lambda c: c.__name__)
def test_get_refuses_what_would_unpickle_and_runs_nothing(store, marker, craft):
    oid = craft(store.client, marker)
    with pytest.raises(UnsupportedType, match="allow_pickle=True"):
        store.get(oid)
    assert not marker.exists()


def test_with_consent_the_reader_gets_the_pickled_value(store, marker):
    oid = pickle_buffer(store.client, marker)
    store.get(oid, allow_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize("craft", CRAFTED, ids=lambda c: c.__name__)
def test_a_named_crafted_object_is_refused_from_every_node(shared_cluster, store, marker, craft):
    oid = craft(store.client, marker)
    name = f"default/planted/{uuid.uuid4().hex}"
    meta = store.client.get_meta(oid)
    assert store.directory.create(name, entry_of(store, meta)) is not None  # as a writer of etcd would
    try:
        for node in shared_cluster.nodes:
            with objects.connect(node.socket) as reader, pytest.raises(UnsupportedType):
                reader.get(name)
        assert not marker.exists()
    finally:
        store.delete(name)


def test_plain_vineyard_data_still_reads_without_consent(store):
    client = store.client
    array = np.arange(12.0).reshape(3, 4)
    frame = pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]})
    table = pa.table({"a": [1, 2, 3]})
    np.testing.assert_array_equal(store.get(client.put(array)), array)
    assert store.get(client.put(frame)).equals(frame)
    assert store.get(client.put(table)).equals(table)
    assert store.get(client.put((1, "x"))) == (1, "x")
    assert store.get(client.put(np.array(["a", "b"], dtype=object))).tolist() == ["a", "b"]


def test_what_vineyard_cannot_resolve_fails_as_an_objects_error(store):
    frame = pd.DataFrame({"b": ["x", "y"]})  # pandas 3 strings: vineyard's own resolver fails on them
    with pytest.raises(objects.ObjectsError, match="could not be decoded"):
        store.get(store.client.put(frame))


def _runs(cluster, documents):
    return {r.name: r for r in LocalRunner(cluster, [parse(d) for d in documents]).run(timeout=120)}


def test_flow_steps_and_backups_refuse_it_too(shared_cluster, store, marker, tmp_path):
    oid = hidden_in_nested(store.client, marker)
    name = "default/tainted/model"
    store.directory.create(name, entry_of(store, store.client.get_meta(oid)))
    steps = tmp_path / "steps.py"
    steps.write_text("def read(ctx):\n    ctx.get('model')\n")
    dataset = {"apiVersion": API, "kind": "Dataset", "metadata": {"name": "tainted"}, "spec": {}}
    try:
        runs = _runs(shared_cluster, [dataset, {
            "apiVersion": API, "kind": "DataProcess", "metadata": {"name": "read"},
            "spec": {"dataset": {"name": "tainted"}, "processor": {"function": f"{steps}:read"}}}])
        assert runs["read"].phase == "Failed" and "UnsupportedType" in runs["read"].message
        runs = _runs(shared_cluster, [dataset, {
            "apiVersion": API, "kind": "DataBackup", "metadata": {"name": "save"},
            "spec": {"dataset": {"name": "tainted"}, "backupPath": str(tmp_path / "backup")}}])
        assert runs["save"].phase == "Failed" and "allow_pickle" in runs["save"].message
        assert not marker.exists()
        assert not (tmp_path / "backup" / "fluidv-backup.json").exists()
    finally:
        store.delete(name)


def test_the_refusal_names_what_it_found(store, marker):
    with pytest.raises(UnsupportedType) as refused:
        store.get(object_tensor(store.client, marker))
    assert "tensor of pickled Python objects" in str(refused.value)
    with pytest.raises(UnsupportedType) as refused:
        store.get(pickle_buffer(store.client, marker))
    assert "vineyard::PickleBuffer" in str(refused.value)
