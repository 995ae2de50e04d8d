"""DataMigrate between a dataset and Parquet files: ``parallelism`` 1 and 4, beside
pandas writing and reading the same frames one file after another (the files baseline)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

import objects
from conftest import stop_for_sure
from fluid_core.flow.context import StepContext
from fluid_core.flow.ops import export_objects, import_files
from vineyard_runtime.local import LocalCluster

FRAMES, ROWS = 32, 131_072  # 32 frames of 4 MiB (four float64 columns)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A one-node cluster holding the frames as ``default/mig/part-NN``."""
    local = LocalCluster(nodes=1, size="1Gi", workdir=str(tmp_path_factory.mktemp("migrate")))
    try:
        local.start()
        with objects.connect(local.nodes[0].socket) as store:
            rng = np.random.default_rng(0)
            frames = [pd.DataFrame(rng.random((ROWS, 4)), columns=list("abcd")) for _ in range(FRAMES)]
            for index, frame in enumerate(frames):
                store.put(frame, name=f"default/mig/part-{index:02d}")
            yield StepContext(store, "default", "mig"), frames
    finally:
        stop_for_sure(local)


@pytest.mark.parametrize("workers", [1, 4])
def test_export_to_parquet(benchmark, dataset, tmp_path, workers):
    ctx, _ = dataset
    out = tmp_path / "out"
    benchmark.pedantic(lambda: export_objects(ctx, str(out), workers=workers),
                       setup=lambda: shutil.rmtree(out, True), rounds=3)


def test_export_baseline_pandas_files(benchmark, dataset, tmp_path):
    _, frames = dataset
    out = tmp_path / "out"

    def write() -> None:
        out.mkdir()
        for index, frame in enumerate(frames):
            frame.to_parquet(out / f"part-{index:02d}.parquet")

    benchmark.pedantic(write, setup=lambda: shutil.rmtree(out, True), rounds=3)


@pytest.mark.parametrize("workers", [1, 4])
def test_import_from_parquet(benchmark, dataset, tmp_path, workers):
    ctx, _ = dataset
    source = tmp_path / "in"
    export_objects(ctx, str(source))

    def clean() -> None:
        ctx.store.delete_many(prefix="default/mig/copy/")

    benchmark.pedantic(lambda: import_files(ctx, str(source), key="copy", workers=workers), setup=clean, rounds=3)
    clean()


def test_import_baseline_pandas_files(benchmark, dataset, tmp_path):
    ctx, _ = dataset
    source = tmp_path / "in"
    export_objects(ctx, str(source))
    benchmark.pedantic(lambda: [pd.read_parquet(p) for p in sorted(source.glob("*.parquet"))], rounds=3)
