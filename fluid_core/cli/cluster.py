"""``fluidv cluster up|status|down``: the embedded local cluster."""

from __future__ import annotations

import json
import os

import click

from fluid_core.cli.errors import CommandError, reported
from fluid_core.cli.group import Group


def _zones(value: str | None) -> list[str] | None:
    return [z.strip() for z in value.split(",")] if value else None


@click.group(cls=Group)
def cluster() -> None:
    """Run a local Vineyard cluster: one etcd and N vineyardd nodes on this machine."""


@cluster.command()
@click.option("--nodes", type=int, default=3, show_default=True, help="Number of vineyardd nodes.")
@click.option("--size", default="1Gi", show_default=True, help="Shared memory per node (1Gi, 512MiB, 2GB).")
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
    from vineyard_runtime.errors import ClusterAlreadyRunning  # noqa: PLC0415
    from vineyard_runtime.local import LocalCluster  # noqa: PLC0415
    from vineyard_runtime.quantity import human_bytes, parse_quantity  # noqa: PLC0415

    with reported():
        local = LocalCluster(
            nodes=nodes, size=size, zones=_zones(zones), workdir=workdir, spill_path=spill_path,
            compression=compression, reserve_memory=reserve_memory, etcd_port=etcd_port, rpc_port=rpc_port,
            start_timeout=timeout, unresponsive_grace=unresponsive_grace, group=group,
        )
        try:
            local.start(detach=True)
        except ClusterAlreadyRunning:
            raise CommandError(f"a cluster already runs in {local.workdir}; stop it with `fluidv cluster down` "
                               "or choose another --workdir") from None
    for line in local.cleaned:
        click.echo(f"note: {line} (left by a cluster that was not stopped cleanly)")
    state = local.state
    click.echo(
        f"cluster up in {local.workdir}: {len(state.nodes)} node(s) of {human_bytes(parse_quantity(state.nodes[0].size))}, "
        f"etcd at {state.etcd.endpoint}"
    )
    for node in state.nodes:
        click.echo(f"  {node.name}  socket {node.socket}  rpc {node.rpc_endpoint}")
    shared = f"you and group {group!r}" if group else "you alone"
    click.echo(f"note: the sockets and files are for {shared}, but etcd (on 127.0.0.1) and each vineyardd's "
               "RPC port (on every interface) have no authentication: any local user can read and change "
               "names in etcd, and an RPC port answers anyone who reaches it. With users you do not trust, "
               "run the cluster in a container or VM of its own, or firewall the RPC ports.")
    click.echo(f"description: {local.layout.state_file}")


@cluster.command(short_help="Show the cluster's phase, etcd and nodes; exit 2 when one is unhealthy.")
@click.option("--workdir", help="The cluster's working directory [$FLUIDV_HOME or ./.fluidv].")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: phase, workdir, etcd, and nodes (a list).")
@click.option("--wide", is_flag=True, help="Add a line per node: region, instance, socket and RPC endpoint.")
def status(workdir: str | None, as_json: bool, wide: bool) -> None:
    """Show the cluster's phase (Starting, Ready, Degraded, Stopping), workdir and etcd,
    then each node: zone, pid, memory, objects, restarts, health (what is wrong with an
    unhealthy one is said under the table); --wide adds each node's region, instance,
    socket and RPC endpoint. Exits 2 when etcd or a node is not healthy."""
    from vineyard_runtime.local import LocalCluster  # noqa: PLC0415
    from vineyard_runtime.local.status import cluster_status  # noqa: PLC0415

    with reported():
        status = cluster_status(LocalCluster.attach(workdir).state)
    if as_json:
        click.echo(json.dumps(status.to_dict(), indent=2))
    else:
        from fluid_core.cli.tables import status_table  # noqa: PLC0415

        status_table(status, wide=wide)
    if not status.healthy:
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
    import time  # noqa: PLC0415

    with reported():
        local = LocalCluster.attach(path)
        click.echo(f"stopping {local.describe()} ...")
        began = time.monotonic()
        local.stop()
    click.echo(f"cluster in {path} stopped in {time.monotonic() - began:.1f}s")
