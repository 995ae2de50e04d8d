"""What a flow looks like on a terminal: the table ``fluidv run`` and the SDK's
``run(show=True)`` keep live while it runs (rich is imported only when one is drawn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fluid_core.flow.runner import OperationRun


def operations_table(runs: Sequence[OperationRun]) -> Any:  # a rich Table (rich is imported lazily)
    """One row per operation: phase, node, duration, bytes, local/remote reads."""
    from rich.table import Table  # noqa: PLC0415

    from vineyard_runtime.quantity import human_bytes  # noqa: PLC0415

    colours = {"Complete": "green", "Failed": "red", "Executing": "yellow", "Pending": "dim"}
    table = Table(title="fluid-vineyard flow")
    for column in ("operation", "phase", "node", "time", "read", "written", "local/remote"):
        table.add_column(column, no_wrap=True)
    for run in runs:
        stats = run.stats or {}
        phase = f"[{colours.get(run.phase, 'white')}]{run.phase}[/]" + (" (removed)" if run.removed else "")
        table.add_row(
            run.name, phase, run.node or "-",
            f"{run.seconds:.2f}s" if run.seconds is not None else "-",
            human_bytes(stats.get("bytes_read", 0)), human_bytes(stats.get("bytes_written", 0)),
            f"{stats.get('local_reads', 0)}/{stats.get('remote_reads', 0)}",
        )
    failed = [r for r in runs if r.phase == "Failed"]
    if failed:
        table.caption = "\n".join(f"{r.kind}/{r.name}: {r.message}" for r in failed)
    return table


__all__ = ["operations_table"]
