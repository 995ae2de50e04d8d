"""Rich tables for the command line: they fit 80 columns, and a cell too long for the
terminal wraps instead of being cut."""

from __future__ import annotations

import os

from rich import box
from rich.console import Console
from rich.table import Table

from vineyard_runtime.local.status import ClusterStatus, NodeStatus
from vineyard_runtime.quantity import human_bytes

#: Width of a console on a pipe when $COLUMNS does not say: wide enough to cut nothing.
PIPE_WIDTH = 400


def console(*, stderr: bool = False) -> Console:
    """The terminal's console; on a pipe, $COLUMNS wide when set, else wide enough that
    no table is squeezed (a table takes only the width it needs)."""
    out = Console(stderr=stderr)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(stderr=stderr, width=PIPE_WIDTH)
    return out


def _memory(node: NodeStatus) -> str:
    if node.memory_used is None or node.memory_limit is None:
        return "-"
    return f"{human_bytes(node.memory_used)} / {human_bytes(node.memory_limit)}"


def _short_health(health: str) -> str:
    """``healthy``, ``down`` or ``unresponsive``: the details go under the table."""
    word = health.split(":", 1)[0].split(" since ", 1)[0]
    return word if word == "healthy" else f"[red]{word}[/red]"


def status_table(status: ClusterStatus, *, wide: bool = False, out: Console | None = None) -> None:
    """Print the cluster's phase, workdir and etcd, a row per node (about 75 columns), and
    what is wrong with each unhealthy node; ``wide`` adds a line per node with its region,
    instance, socket and RPC endpoint."""
    out = out or console()
    etcd = status.etcd
    colour = "green" if status.phase == "Ready" else "red"
    out.print(f"phase    [{colour}]{status.phase}[/{colour}]", highlight=False)
    out.print(f"workdir  {status.workdir}", highlight=False, soft_wrap=True)
    out.print(f"etcd     {etcd['endpoint']}  prefix {etcd['prefix']}  pid {etcd['pid'] or '-'}  "
              f"restarts {etcd['restarts']}" + ("" if etcd["health"] == "healthy" else f"  [red]{etcd['health']}[/red]"),
              highlight=False, soft_wrap=True)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("node", "zone", "pid", "memory used/limit", "objects", "restarts", "health"):
        table.add_column(column, overflow="fold")
    for node in status.nodes:
        table.add_row(node.name, node.labels.get("topology.kubernetes.io/zone", "-"), str(node.pid or "-"),
                      _memory(node), "-" if node.objects is None else str(node.objects), str(node.restarts),
                      _short_health(node.health))
    out.print(table)
    for node in status.nodes:
        if wide:
            out.print(f"{node.name}  region {node.labels.get('topology.kubernetes.io/region', '-')}  instance "
                      f"{'-' if node.instance_id is None else node.instance_id}  socket {node.socket}  "
                      f"rpc {node.rpc_endpoint}", highlight=False, soft_wrap=True)
        if node.health != "healthy":
            out.print(f"{node.name}: {node.health}", highlight=False, soft_wrap=True)
