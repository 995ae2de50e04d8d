"""The object directory at 10,000 names: named puts, ``list``, label and prefix queries,
against listing a directory of 10,000 files (the files baseline) in the same run.

Run with ``make bench``; the put rate is in ``extra_info`` of the list benchmarks.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import objects
from conftest import stop_for_sure
from vineyard_runtime.local import LocalCluster

OBJECTS, LABELLED = 10_000, 1_000


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """One node holding 10,000 small named objects, 1,000 of them labelled ``set=a``."""
    local = LocalCluster(nodes=1, size="512Mi", workdir=str(tmp_path_factory.mktemp("dir-bench")))
    local.start()
    try:
        with objects.connect(local.nodes[0].socket) as store:
            began = time.perf_counter()
            for i in range(OBJECTS):
                store.put(np.full(4, float(i)), f"many/{i:05d}",
                          labels={"set": "a" if i % (OBJECTS // LABELLED) == 0 else "b"})
            puts_per_second = OBJECTS / (time.perf_counter() - began)
            yield store, puts_per_second
    finally:
        stop_for_sure(local)


@pytest.mark.parametrize("query", ["all", "label", "prefix"])  # repeated: what changed is read
def test_list_10000_names(benchmark, filled, query):
    store, puts_per_second = filled
    kwargs = {"all": {}, "label": {"labels": {"set": "a"}}, "prefix": {"prefix": "many/01"}}[query]
    found = benchmark(lambda: store.list(**kwargs))
    assert len(found) == {"all": OBJECTS, "label": LABELLED, "prefix": 1_000}[query]
    benchmark.extra_info["named puts per second"] = round(puts_per_second)


def test_list_10000_names_first_time(benchmark, filled):
    """A store's first listing reads and parses every entry."""
    store, _ = filled
    opened: list[objects.ObjectStore] = []

    def fresh():
        opened.append(objects.connect(store.target.address))
        return (opened[-1],), {}

    def close(new):  # each store has a watchdog of its own: closed after its round
        new.close()

    try:
        found = benchmark.pedantic(lambda new: new.list(), setup=fresh, teardown=close, rounds=3)
    finally:
        for new in opened:
            new.close()
    assert len(found) == OBJECTS


def test_list_10000_names_after_a_delete(benchmark, filled):
    """A listing after a delete also reads every key (without values) to find what went."""
    store, _ = filled
    store.list()
    doomed = iter(range(OBJECTS - 1, 0, -1))

    def delete_one():
        store.delete(f"many/{next(doomed):05d}")
        return (), {}

    benchmark.pedantic(store.list, setup=delete_one, rounds=5)


def test_baseline_files_listdir_10000(benchmark, tmp_path):
    for i in range(OBJECTS):
        (tmp_path / f"{i:05d}.npy").touch()
    found = benchmark(lambda: sorted(os.listdir(tmp_path)))
    assert len(found) == OBJECTS
