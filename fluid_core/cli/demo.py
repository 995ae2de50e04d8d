"""``fluidv demo``: the main job on the embedded local cluster."""

from __future__ import annotations

import tempfile
import time

import click

from fluid_core.cli.errors import reported


@click.command()
@click.option("--nodes", type=int, default=3, show_default=True, help="Nodes of the demo cluster.")
@click.option("--size-mib", type=int, default=64, show_default=True, help="MiB of data to share.")
def demo(nodes: int, size_mib: int) -> None:
    """Bring up a local cluster, share an array across nodes, show the status, tear down."""
    import numpy as np  # noqa: PLC0415

    from fluid_core.cli.tables import status_table  # noqa: PLC0415
    from vineyard_runtime.local import LocalCluster  # noqa: PLC0415
    from vineyard_runtime.quantity import human_bytes  # noqa: PLC0415

    size = f"{max(256, 4 * size_mib)}Mi"
    with tempfile.TemporaryDirectory(prefix="fluidv-demo-") as workdir, reported():
        click.echo(f"starting a {nodes}-node local cluster ({size} per node) ...")
        began = time.perf_counter()
        with LocalCluster(nodes=nodes, size=size, workdir=workdir) as local:
            click.echo(f"ready in {time.perf_counter() - began:.2f}s")
            first, last = local.nodes[0].name, local.nodes[-1].name
            data = np.random.default_rng(0).random(size_mib * 2**20 // 8)
            producer, consumer = local.client(first), local.client(last)
            began = time.perf_counter()
            oid = producer.put(data, persist=True)
            producer.put_name(oid, "demo/array")
            put_s = time.perf_counter() - began
            began = time.perf_counter()
            seen = consumer.get(name="demo/array", fetch=True)
            get_s = time.perf_counter() - began
            if not np.array_equal(seen, data):
                raise click.ClickException("the array read on the last node differs from the one put")
            click.echo(
                f"put {human_bytes(data.nbytes)} on {first} in {put_s * 1e3:.1f} ms; "
                f"read on {last} in {get_s * 1e3:.1f} ms "
                f"({data.nbytes / get_s / 1e9:.2f} GB/s across nodes), contents equal"
            )
            del seen
            producer.close()
            consumer.close()
            status_table(local.status())
        click.echo("cluster stopped")
