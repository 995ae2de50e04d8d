"""The objects API raises ``ObjectsError`` and nothing else for what users get wrong
and for what the node does (closed stores, killed nodes, full stores), as docs/objects.md
promises: one hierarchy to catch, each message saying what to do."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import objects
from support.waiting import wait_for
@pytest.fixture
def store(shared_cluster):
    with objects.connect(shared_cluster.nodes[0].socket) as connected:
        yield connected


BAD_CALLS = {
    "a negative id": (lambda s: s.get(-1), objects.ObjectNotFound, "object ids are 0"),
    "an id past 64 bits": (lambda s: s.info(1 << 64), objects.ObjectNotFound, "object ids are 0"),
    "an unknown dtype": (lambda s: s.allocate((4,), "no-such-dtype"), objects.UnsupportedType, "numpy dtype"),
    "a prefix that is no string": (lambda s: s.list(prefix=5), objects.ObjectsError, "prefix must be a string"),
    "a float as target": (lambda s: s.get(1.5), objects.ObjectsError, "give a name, id or ObjectRef"),
    "labels that are no strings": (lambda s: s.put(1, "errors/x", labels={"a": 1}), objects.ObjectsError,
                                   "labels must map"),
}


@pytest.mark.parametrize("case", BAD_CALLS, ids=list(BAD_CALLS))
def test_bad_input_raises_an_objects_error_that_says_what_was_wrong(store, case):
    call, kind, needle = BAD_CALLS[case]
    with pytest.raises(kind, match=needle):
        call(store)


def test_an_allocation_larger_than_the_node_is_store_full(store):
    with pytest.raises(objects.StoreFull), store.allocate((1 << 40,), "uint8", name="errors/huge"):
        pass
    assert not store.exists("errors/huge")


def test_a_closed_store_says_so_for_every_call(shared_cluster):
    store = objects.connect(shared_cluster.nodes[0].socket)
    kept = store.put(np.arange(3.0), "errors/kept", replace=True)
    store.close()
    for call in (lambda: store.get(kept), lambda: store.put(1), lambda: store.delete(kept),
                 lambda: store.allocate((3,))):
        with pytest.raises(objects.StoreUnavailable, match="was closed; connect again"):
            call()
    with objects.connect(shared_cluster.nodes[0].socket) as again:
        again.delete("errors/kept")


def test_calls_to_a_killed_node_raise_store_unavailable_not_vineyards_own(make_cluster):
    local = make_cluster(nodes=2, size="64Mi")
    victim = local.state.nodes[1]
    with objects.connect(victim.socket) as store:
        big = store.put(np.zeros(1 << 18))
        os.kill(victim.pid, signal.SIGKILL)
        wait_for(lambda: local.state.nodes[1].pid != victim.pid, timeout=60, message="the node restarted")
        for call in (lambda: store.put(np.arange(3)), lambda: store.get(big)):
            with pytest.raises(objects.ObjectsError) as raised:
                call()
            assert type(raised.value).__module__.startswith("objects")
