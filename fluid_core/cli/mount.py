"""``fluidv mount DATASET MOUNTPOINT``: the dataset's objects as files (FUSE)."""

from __future__ import annotations

import click

from fluid_core.cli.errors import reported
from fluid_core.models.object_names import dataset_prefix


@click.command()
@click.argument("dataset")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--namespace", default="default", show_default=True)
@click.option("--socket", help="A node's IPC socket [$VINEYARD_IPC_SOCKET / $VINEYARD_CONFIG].")
@click.option("--config", help="A vineyard-config.yaml (as the bridge publishes).")
@click.option("--workdir", help="The local cluster's working directory [$FLUIDV_HOME or ./.fluidv].")
@click.option("--node", help="The local cluster's node to serve from [node-0].")
@click.option("--writable", is_flag=True, help="Writing .npy/.arrow/.parquet files creates objects; rm deletes.")
@click.option("--metrics-port", type=int, help="Serve fluidv_fuse_bytes_served (Prometheus) on this port.")
def mount(dataset: str, mountpoint: str, namespace: str, socket: str | None, config: str | None,
          workdir: str | None, node: str | None, writable: bool, metrics_port: int | None) -> None:
    """Mount the dataset read-only (or --writable) until interrupted; remount if the
    FUSE process dies; unmount on exit and on SIGTERM. The dataset's objects are the
    names under NAMESPACE/DATASET/; the node is found as objects.connect() finds it."""
    import signal  # noqa: PLC0415

    from objects.fusemount import MountSupervisor  # noqa: PLC0415

    supervisor = MountSupervisor(mountpoint, dataset_prefix(namespace, dataset), socket=socket, config=config,
                                 workdir=workdir, node=node, writable=writable, metrics_port=metrics_port)
    with reported():
        supervisor.start()
    click.echo(f"{namespace}/{dataset} mounted at {supervisor.mountpoint}"
               f"{' (writable)' if writable else ' (read-only)'}", err=True)
    signal.signal(signal.SIGTERM, lambda *_: supervisor.interrupt())
    try:
        supervisor.watch()
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop()
