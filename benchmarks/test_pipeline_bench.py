"""The demo pipeline (generate -> features -> train -> evaluate) with ~1 GiB of
intermediates, handed over three ways in the same run: this project's object cache
(each stage on the node holding its inputs), Parquet/``.npy`` files on local disk, and
pickle protocol 5 through pipes. Goal: >= 10x faster hand-over than files.

``extra_info``: ``handover_seconds`` (time stages spend getting and putting their
data), ``stage_seconds`` (whole stages) and ``handover_x_files`` (files / this way).
"""

from __future__ import annotations

import os

import pytest

from conftest import stop_for_sure
from fluid_core.cli.demo import _rows, build_flow
from fluid_core.demo import pipeline
from fluid_core.demo.files import run_with_files
from fluid_core.demo.pipes import run_with_pipes
from vineyard_runtime.local import LocalCluster

SIZE_MIB = int(os.environ.get("FLUIDV_BENCH_PIPELINE_MIB", "640"))  # ~1 GiB of intermediates
ROWS = _rows(SIZE_MIB)
FILES_HANDOVER: dict[str, float] = {}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    local = LocalCluster(nodes=3, size=f"{4 * SIZE_MIB}Mi", reserve_memory=True,
                         workdir=str(tmp_path_factory.mktemp("pipeline")))
    try:
        local.start()
        yield local
    finally:
        stop_for_sure(local)


def record(benchmark, stages: list[dict], handover_key: str = "io_seconds") -> None:
    handover = sum(s.get(handover_key) or 0.0 for s in stages)
    benchmark.extra_info["handover_seconds"] = round(handover, 4)
    benchmark.extra_info["stage_seconds"] = round(sum(s.get("step_seconds") or s.get("seconds") or 0.0
                                                      for s in stages), 4)
    if FILES_HANDOVER.get("files"):
        benchmark.extra_info["handover_x_files"] = round(FILES_HANDOVER["files"] / max(handover, 1e-9), 2)


def test_1_files(benchmark, tmp_path):
    steps = _steps()
    result: dict = {}

    def run() -> None:
        directory = tmp_path / f"files-{len(result)}"
        directory.mkdir()
        result["stages"] = run_with_files(steps, str(directory), str(tmp_path))

    benchmark.pedantic(run, rounds=2, iterations=1)
    stages = [{**s, **(s.get("stats") or {})} for s in result["stages"]]
    assert all(s["ok"] for s in result["stages"])
    FILES_HANDOVER["files"] = sum(s["io_seconds"] for s in stages)
    record(benchmark, stages)


def test_2_object_cache(benchmark, cluster):
    result: dict = {}

    def run() -> None:
        result["stages"] = build_flow(cluster, ROWS).run(f"bench-{len(result)}").wait(timeout=1800)

    benchmark.pedantic(run, rounds=2, iterations=1)
    assert [s["phase"] for s in result["stages"]] == ["Complete"] * 4
    assert sum(s["remote_reads"] for s in result["stages"]) == 0
    record(benchmark, result["stages"])


def test_3_pickle_pipes(benchmark):
    stages = [(pipeline.generate, {"rows": str(ROWS)}), (pipeline.features, {}), (pipeline.train, {"epochs": "8"}),
              (pipeline.evaluate, {})]
    result: dict = {}

    def run() -> None:
        result["stages"] = run_with_pipes(stages)

    benchmark.pedantic(run, rounds=2, iterations=1)
    assert len(result["stages"]) == 4
    record(benchmark, result["stages"])


def _steps() -> list[dict]:
    class _Local:  # build_flow needs a backend only to run; the files run uses the steps alone
        nodes: list = []

    return build_flow(_Local(), ROWS).steps
