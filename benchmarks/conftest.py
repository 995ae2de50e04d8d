"""Fixtures for benchmarks: real local clusters, stopped even when a run fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from goals import median, summary_lines
from vineyard_runtime.local import LocalCluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tests' support package
from support.localcluster import force_stop


#: The main job's rounds per channel, each (hand-over s, in-step s, wall s), filled by
#: the pipeline benchmark and printed as one table of medians at the end of the run.
PIPELINE: dict[str, list[tuple[float, float, float]]] = {}
FILES, RAY = "files (Parquet, .npy)", "Ray object store"


def pipeline_medians(channel: str) -> tuple[float, float, float] | None:
    """Median hand-over, in-step and wall seconds of ``channel``'s rounds (None: not run)."""
    rounds = PIPELINE.get(channel)
    if not rounds:
        return None
    handover, steps, wall = zip(*rounds)
    return median(list(handover)), median(list(steps)), median(list(wall))


def _ratio(numerator: float | None, denominator: float | None, fmt: str = "{:.1f}x") -> str:
    if numerator is None or not denominator:
        return "n/a"
    return fmt.format(numerator / denominator)


def _pipeline_table(write) -> None:  # type: ignore[no-untyped-def]
    files, ray = pipeline_medians(FILES), pipeline_medians(RAY)
    write("")
    write("main job (fluidv demo's four stages), medians of every round:")
    write("  hand-over: time stages spend getting and putting their data; in-step: the sum of")
    write("  the stages' own run times; wall: the whole pipeline, first stage start to last end")
    write(f"{'channel':<30}{'rounds':>7}{'hand-over s':>13}{'in-step s':>11}{'wall s':>9}"
          f"{'files/this':>12}{'this/Ray':>10}{'files/this, wall':>18}")
    for channel in PIPELINE:
        medians = pipeline_medians(channel)
        assert medians is not None
        handover, steps, wall = medians
        write(f"{channel:<30}{len(PIPELINE[channel]):>7}{handover:>13.3f}{steps:>11.3f}{wall:>9.3f}"
              f"{_ratio(files and files[0], handover):>12}{_ratio(handover, ray and ray[0], '{:.2f}x'):>10}"
              f"{_ratio(files and files[2], wall):>18}")
    for name, medians in ((FILES, files), (RAY, ray)):
        if medians is None:
            write(f"  {name} did not run in this session: its ratios are n/a")


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """The main job's table, then every stated goal with MET or MISSED."""
    if PIPELINE:
        _pipeline_table(terminalreporter.write_line)
    for line in summary_lines():
        terminalreporter.write_line(line)


def stop_for_sure(local: LocalCluster) -> None:
    """Stop ``local`` and SIGKILL whatever of it survives (the tests' own way)."""
    force_stop(local, set())


@pytest.fixture(
    scope="module",
    params=[(False, False), (True, False), (False, True)],
    ids=["compression-off", "compression-on", "compression-off-reserved"],
)
def two_nodes(request, tmp_path_factory):
    """Two 3 GiB nodes: migration compression off or on; memory faulted in at start or not."""
    compression, reserve = request.param
    local = LocalCluster(nodes=2, size="3Gi", compression=compression, reserve_memory=reserve,
                         workdir=str(tmp_path_factory.mktemp("bench")))
    try:
        local.start()
        yield local
    finally:
        stop_for_sure(local)
