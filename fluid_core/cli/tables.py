"""Rich tables for the command line."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from vineyard_runtime.local.status import NodeStatus
from vineyard_runtime.quantity import human_bytes


def status_table(nodes: Sequence[NodeStatus], console: Console | None = None) -> None:
    """Print one row per node."""
    table = Table(title="fluid-vineyard local cluster")
    for column in ("node", "zone", "region", "instance", "pid", "socket", "rpc", "memory used/limit",
                   "objects", "health", "restarts"):
        table.add_column(column, no_wrap=True)
    for node in nodes:
        memory = (
            f"{human_bytes(node.memory_used)} / {human_bytes(node.memory_limit)}"
            if node.memory_used is not None and node.memory_limit is not None else "-"
        )
        health = node.health if node.health == "healthy" else f"[red]{node.health}[/red]"
        table.add_row(
            node.name,
            node.labels.get("topology.kubernetes.io/zone", "-"),
            node.labels.get("topology.kubernetes.io/region", "-"),
            str(node.instance_id), str(node.pid or "-"),
            node.socket, node.rpc_endpoint, memory,
            "-" if node.objects is None else str(node.objects), health, str(node.restarts),
        )
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 400))
    console.print(table)
