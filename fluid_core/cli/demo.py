"""``fluidv demo``: the main job on the embedded local cluster.

A four-stage pipeline (generate -> features -> train -> evaluate) runs twice with the
same code: through the object cache, each stage placed on the node holding its inputs,
and through Parquet/``.npy`` files on local disk. A table compares the two.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import TYPE_CHECKING, Any

import click

from fluid_core.cli.errors import CommandError, reported

if TYPE_CHECKING:
    from fluid_core.sdk import Flow


def _rows(size_mib: int) -> int:
    from fluid_core.demo.pipeline import ROW_BYTES  # noqa: PLC0415

    return max(1000, size_mib * 2**20 // ROW_BYTES)


def build_flow(local: object, rows: int) -> Flow:
    """The pipeline as an SDK flow on dataset ``default/demo``."""
    from fluid_core.demo import pipeline  # noqa: PLC0415
    from fluid_core.sdk import Dataset  # noqa: PLC0415

    dataset = Dataset("demo", backend=local)
    return (dataset.process(pipeline.generate, params={"rows": rows}, name="generate", affinity=None)
            .process(pipeline.features, inputs=["raw"], name="features")
            .process(pipeline.train, inputs=["features", "labels"], name="train", params={"epochs": 8})
            .process(pipeline.evaluate, inputs=["features", "labels", "model"], outputs=["metrics"],
                     name="evaluate"))


def comparison_table(cache: list[dict[str, Any]], files: list[dict[str, Any]]) -> Any:  # a rich Table
    from rich.table import Table  # noqa: PLC0415

    from vineyard_runtime.quantity import human_bytes  # noqa: PLC0415

    table = Table(title="pipeline: object cache vs files on local disk")
    for column in ("stage", "node", "cache stage", "cache I/O", "files stage", "files I/O",
                   "shared", "local/remote", "I/O x"):
        table.add_column(column, justify="right", no_wrap=True)
    totals = {"cs": 0.0, "ci": 0.0, "fs": 0.0, "fi": 0.0, "bytes": 0, "local": 0, "remote": 0}
    for step, base in zip(cache, files):
        fstats = base.get("stats") or {}
        cs, ci = step["step_seconds"] or 0.0, step["io_seconds"]
        fs_, fi = base.get("seconds") or 0.0, fstats.get("io_seconds", 0.0)
        totals["cs"] += cs
        totals["ci"] += ci
        totals["fs"] += fs_
        totals["fi"] += fi
        totals["bytes"] += step["bytes_written"]
        totals["local"] += step["local_reads"]
        totals["remote"] += step["remote_reads"]
        table.add_row(step["name"], step["node"] or "-", f"{cs:.3f}s", f"{ci:.3f}s", f"{fs_:.3f}s", f"{fi:.3f}s",
                      human_bytes(step["bytes_written"]), f"{step['local_reads']}/{step['remote_reads']}",
                      f"{fi / ci:.1f}x" if ci > 0 else "-")
    table.add_row("total", "", f"{totals['cs']:.3f}s", f"{totals['ci']:.3f}s", f"{totals['fs']:.3f}s",
                  f"{totals['fi']:.3f}s", human_bytes(totals["bytes"]), f"{totals['local']}/{totals['remote']}",
                  f"{totals['fi'] / totals['ci']:.1f}x" if totals["ci"] > 0 else "-", style="bold")
    return table, totals


@click.command()
@click.option("--nodes", type=int, default=3, show_default=True, help="Nodes of the demo cluster.")
@click.option("--size-mib", type=int, default=256, show_default=True, help="MiB of generated table data.")
@click.option("--workdir", help="Where the cluster and the files baseline live (default: a temporary directory).")
def demo(nodes: int, size_mib: int, workdir: str | None) -> None:
    """Run the pipeline through the object cache and through files; compare."""
    from rich.console import Console  # noqa: PLC0415

    from fluid_core.demo.files import run_with_files  # noqa: PLC0415
    from fluid_core.flow import FlowInvalid  # noqa: PLC0415
    from vineyard_runtime.local import LocalCluster  # noqa: PLC0415

    if size_mib < 1:
        raise CommandError("--size-mib must be at least 1")
    console = Console()
    console.width = max(console.width, 120)
    rows = _rows(size_mib)
    size = f"{max(512, 4 * size_mib)}Mi"
    with tempfile.TemporaryDirectory(prefix="fluidv-demo-", dir=workdir) as base, reported():
        console.print(f"starting a {nodes}-node local cluster ({size} per node) ...")
        began = time.perf_counter()
        # reserve_memory: each node faults its shared memory in at start, so the first
        # put of every stage writes at memory speed instead of paying page faults
        with LocalCluster(nodes=nodes, size=size, workdir=os.path.join(base, "cluster"),
                          reserve_memory=True) as local:
            console.print(f"ready in {time.perf_counter() - began:.2f}s; {rows:,} rows (~{size_mib} MiB) to process")
            try:
                flow = build_flow(local, rows)
                handle = flow.run("demo", show=True)
            except FlowInvalid as exc:
                raise CommandError(str(exc)) from None
            cache = handle.wait(timeout=3600)
            failed = [s for s in cache if s["phase"] != "Complete"]
            if failed:
                raise CommandError(f"{failed[0]['name']} failed: {failed[0]['message']}")
            files_dir = os.path.join(base, "files")
            os.makedirs(files_dir)
            console.print("the same pipeline through Parquet/.npy files on local disk ...")
            files = run_with_files(flow.steps, files_dir, base)
            if len(files) != len(cache) or not all(r.get("ok") for r in files):
                raise CommandError(f"the files baseline failed: {files[-1].get('error')}")
            table, totals = comparison_table(cache, files)
            console.print(table)
            console.print(f"hand-over time: {totals['ci']:.3f}s through the cache vs {totals['fi']:.3f}s through "
                          f"files ({totals['fi'] / max(totals['ci'], 1e-9):.1f}x); whole pipeline "
                          f"{totals['cs']:.2f}s vs {totals['fs']:.2f}s "
                          f"({totals['fs'] / max(totals['cs'], 1e-9):.1f}x)")
        console.print("cluster stopped")
