"""The demo pipeline as an SDK flow on dataset ``default/demo``, and the table comparing
its run through the object cache with its run through files (``fluidv demo``)."""

from __future__ import annotations

from typing import Any

from fluid_core.demo import pipeline
from fluid_core.demo.pipeline import ROW_BYTES
from fluid_core.sdk import Dataset, Flow


def rows_for(size_mib: int) -> int:
    """Rows of generated data for about ``size_mib`` MiB."""
    return max(1000, size_mib * 2**20 // ROW_BYTES)


def build_flow(local: object, rows: int) -> Flow:
    """The pipeline as an SDK flow on dataset ``default/demo``."""
    dataset = Dataset("demo", backend=local)
    return (dataset.process(pipeline.generate, params={"rows": rows}, name="generate", affinity=None)
            .process(pipeline.features, inputs=["raw"], name="features")
            .process(pipeline.train, inputs=["features", "labels"], name="train", params={"epochs": 8})
            .process(pipeline.evaluate, inputs=["features", "labels", "model"], outputs=["metrics"],
                     name="evaluate"))


def comparison_table(cache: list[dict[str, Any]], files: list[dict[str, Any]]) -> tuple[Any, dict[str, float]]:
    """The table comparing the cache run with the files run (a rich Table), and its totals."""
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


def evaluation_line(local: Any, flow: Flow) -> str:
    """What the pipeline found: the metrics its evaluate stage put into the cache."""
    import objects  # noqa: PLC0415
    from fluid_core.models.object_names import object_name  # noqa: PLC0415

    with objects.connect(local.nodes[0].socket) as store:
        metrics = store.get(object_name(flow.dataset.namespace, flow.dataset.name, "metrics"))
    return (f"evaluation: accuracy {metrics['accuracy']:.1%} over {metrics['rows']:,} rows, "
            f"final training loss {metrics['final_loss']:.4f}")


__all__ = ["build_flow", "comparison_table", "evaluation_line", "rows_for"]
