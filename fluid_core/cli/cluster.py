"""``fluidv cluster up|status|down``: the embedded local cluster."""

from __future__ import annotations

import json
import os

import click

from fluid_core.cli.errors import reported


def _zones(value: str | None) -> list[str] | None:
    return [z.strip() for z in value.split(",")] if value else None


@click.group()
def cluster() -> None:
    """Run a local Vineyard cluster: one etcd and N vineyardd nodes on this machine."""


@cluster.command()
@click.option("--nodes", type=int, default=3, show_default=True, help="Number of vineyardd nodes.")
@click.option("--size", default="1Gi", show_default=True, help="Shared memory per node (1Gi, 512Mi).")
@click.option("--zones", help="Zone of each node, comma-separated (a,a,b).")
@click.option("--workdir", help="Where the cluster keeps its files [$FLUIDV_HOME or ./.fluidv].")
@click.option("--spill-path", help="Directory where nodes spill objects when memory runs short.")
@click.option("--compression/--no-compression", default=False, show_default=True,
              help="Compress objects migrated between nodes (slower on numeric data).")
@click.option("--reserve-memory", is_flag=True,
              help="Fault in each node's memory at start: no page faults on first use.")
@click.option("--etcd-port", type=int, help="etcd client port (default: a free port).")
@click.option("--rpc-port", type=int, help="RPC port of node-0; node-i uses this + i (default: free ports).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for readiness.")
@click.option("--unresponsive-grace", type=float, default=30.0, show_default=True,
              help="Seconds a node may stop answering before it is restarted.")
@click.option("--group", help="Share the cluster with this group's members (default: only you may use it).")
def up(nodes: int, size: str, zones: str | None, workdir: str | None, spill_path: str | None,
       compression: bool, reserve_memory: bool, etcd_port: int | None, rpc_port: int | None, timeout: float,
       unresponsive_grace: float, group: str | None) -> None:
    """Start the cluster and return once every node is ready."""
    from vineyard_runtime.local import LocalCluster  # noqa: PLC0415

    with reported():
        local = LocalCluster(
            nodes=nodes, size=size, zones=_zones(zones), workdir=workdir, spill_path=spill_path,
            compression=compression, reserve_memory=reserve_memory, etcd_port=etcd_port, rpc_port=rpc_port,
            start_timeout=timeout, unresponsive_grace=unresponsive_grace, group=group,
        )
        local.start(detach=True)
    for line in local.cleaned:
        click.echo(f"note: {line} (left by a cluster that was not stopped cleanly)")
    state = local.state
    click.echo(
        f"cluster up in {local.workdir}: {len(state.nodes)} node(s) of {state.nodes[0].size}, "
        f"etcd at {state.etcd.endpoint}"
    )
    for node in state.nodes:
        click.echo(f"  {node.name}  socket {node.socket}  rpc {node.rpc_endpoint}")
    shared = f"you and group {group!r}" if group else "you alone"
    click.echo(f"note: the sockets and files are for {shared}; etcd and the blob servers listen on 127.0.0.1 "
               "without authentication, and vineyardd binds its RPC port on every interface (0.0.0.0): "
               "on a machine with other users, see the README's security section")
    click.echo(f"description: {local.layout.state_file}")


@cluster.command()
@click.option("--workdir", help="The cluster's working directory [$FLUIDV_HOME or ./.fluidv].")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable list of nodes.")
def status(workdir: str | None, as_json: bool) -> None:
    """Show each node: labels, instance, pid, socket, memory, objects, health. Exits 2
    when a node is not healthy."""
    from vineyard_runtime.local import LocalCluster  # noqa: PLC0415

    with reported():
        nodes = LocalCluster.attach(workdir).status()
    if as_json:
        click.echo(json.dumps([n.to_dict() for n in nodes], indent=2))
    else:
        from fluid_core.cli.tables import status_table  # noqa: PLC0415

        status_table(nodes)
    if any(n.health != "healthy" for n in nodes):
        raise click.exceptions.Exit(2)


@cluster.command()
@click.option("--workdir", help="The cluster's working directory [$FLUIDV_HOME or ./.fluidv].")
def down(workdir: str | None) -> None:
    """Stop every daemon of the cluster and remove its sockets."""
    from vineyard_runtime.local import LocalCluster, default_workdir  # noqa: PLC0415
    from vineyard_runtime.local.cluster import clean_stale, is_running  # noqa: PLC0415

    path = os.path.abspath(workdir or default_workdir())
    if not is_running(path):
        for line in clean_stale(path):
            click.echo(f"note: {line} (left by a cluster that was not stopped cleanly)")
        click.echo(f"no cluster runs in {path}; nothing to stop")
        return
    with reported():
        LocalCluster.attach(path).stop()
    click.echo(f"cluster in {path} stopped")
