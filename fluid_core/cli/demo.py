"""``fluidv demo``: the main job on the embedded local cluster.

A four-stage pipeline (generate -> features -> train -> evaluate) runs twice with the
same code: through the object cache, each stage placed on the node holding its inputs,
and through Parquet/``.npy`` files on local disk. A table compares the two.
"""

from __future__ import annotations

import os
import tempfile
import time

import click

from fluid_core.cli.errors import CommandError, reported

@click.command()
@click.option("--nodes", type=int, default=3, show_default=True, help="Nodes of the demo cluster.")
@click.option("--size-mib", type=int, default=256, show_default=True, help="MiB of generated table data.")
@click.option("--workdir", help="Where the cluster and the files baseline live (default: a temporary directory).")
def demo(nodes: int, size_mib: int, workdir: str | None) -> None:
    """Run the pipeline through the object cache and through files; compare."""
    from rich.console import Console  # noqa: PLC0415

    from fluid_core.demo.files import run_with_files  # noqa: PLC0415
    from fluid_core.demo.flow import build_flow, comparison_table, evaluation_line, rows_for  # noqa: PLC0415
    from fluid_core.flow import FlowInvalid  # noqa: PLC0415
    from fluid_core.sdk import FlowFailed  # noqa: PLC0415
    from vineyard_runtime.local import LocalCluster  # noqa: PLC0415

    if size_mib < 1:
        raise CommandError("--size-mib must be at least 1")
    console = Console()
    console.width = max(console.width, 120)
    rows = rows_for(size_mib)
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
            try:
                cache = handle.wait(timeout=3600)
            except FlowFailed as exc:
                raise CommandError(f"{exc.step} failed: {exc.reason}") from None
            if not console.is_terminal:  # rich's live table ends with a newline on terminals only
                console.line()
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
            console.print(evaluation_line(local, flow), highlight=False)
            console.print(f"stopping the demo's cluster: {local.describe()} ...", highlight=False)
        console.print("cluster stopped")
