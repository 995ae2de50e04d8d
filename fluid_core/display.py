"""What a flow looks like on a terminal: the table ``fluidv run`` and the SDK's
``run(show=True)`` keep live while it runs (rich is imported only when one is drawn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fluid_core.flow.runner import OperationRun

#: Lines of a failed step's log shown under the table.
TAIL_LINES = 8
#: What marks a phase whose objects ``ttlSecondsAfterFinished`` removed, and what it means.
REMOVED_MARK = "*"
REMOVED_LEGEND = (f"{REMOVED_MARK} removed: ttlSecondsAfterFinished passed after the step finished, so the "
                  "objects it wrote in this run were deleted (declared outputs are kept)")


def operations_table(runs: Sequence[OperationRun]) -> Any:  # a rich renderable (rich is imported lazily)
    """One row per operation (phase, node, duration, bytes, local/remote reads), about 80
    columns wide; under it, what each failed operation said with its log's last lines,
    and what a marked phase means."""
    from rich import box  # noqa: PLC0415
    from rich.console import Group  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    from vineyard_runtime.quantity import human_bytes  # noqa: PLC0415

    colours = {"Complete": "green", "Failed": "red", "Executing": "yellow", "Pending": "dim"}
    table = Table(title="fluid-vineyard flow", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("operation", "phase", "node", "time", "read", "written", "local/remote"):
        numeric = column in ("time", "read", "written", "local/remote")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for run in runs:
        stats = run.stats or {}
        table.add_row(
            Text(run.name), Text(run.phase + (REMOVED_MARK if run.removed else ""), style=colours.get(run.phase, "")),
            run.node or "-", f"{run.seconds:.2f}s" if run.seconds is not None else "-",
            human_bytes(stats.get("bytes_read", 0)), human_bytes(stats.get("bytes_written", 0)),
            f"{stats.get('local_reads', 0)}/{stats.get('remote_reads', 0)}",
        )
    parts: list[Any] = [table]
    for run in runs:
        if run.phase == "Failed":
            parts += [Text(line, style="red" if index == 0 else "") for index, line in enumerate(failure_lines(run))]
    if any(run.removed for run in runs):
        parts.append(Text(REMOVED_LEGEND, style="dim"))
    return Group(*parts)


def failure_lines(run: OperationRun) -> list[str]:
    """What a failed operation said, then its log's last lines as they are in the log
    (the operation's message carries them joined on one line)."""
    said, marker, joined = run.message, f"; log {run.log}: ", ""
    if run.log and marker in said:
        said, _, joined = said.partition(marker)
    where = f" on {run.node}" if run.node else ""
    lines = [f"{run.kind}/{run.name} failed{where}: {said}"]
    if run.log:
        tail = _tail(run.log) or [line for line in joined.split(" | ") if line]
        lines.append(f"  log {run.log}" + (f", last {len(tail)} line(s):" if tail else ""))
        lines += [f"    {line}" for line in tail]
    return lines


def _tail(path: str, window: int = 1 << 16) -> list[str]:
    """The last non-blank lines of the log at ``path`` (of its last ``window`` bytes)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, 2) - window))
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    return text.rstrip().splitlines()[-TAIL_LINES:]


__all__ = ["failure_lines", "operations_table"]
