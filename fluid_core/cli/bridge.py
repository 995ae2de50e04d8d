"""``fluidv bridge``: publish the node's Vineyard worker into a dataset mount."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import click

from fluid_core.cli.errors import reported


@click.command()
@click.option("--socket", required=True, help="The worker's IPC socket on this node.")
@click.option("--publish-dir", required=True, help="Directory (in the dataset mount) to publish into.")
@click.option("--rpc-endpoint", "rpc_endpoints", multiple=True,
              help="RPC endpoints for clients without the socket [$VINEYARD_RPC_ENDPOINT, comma-separated].")
@click.option("--runtime", help="The VineyardRuntime served (for logs).")
@click.option("--namespace", default="default", show_default=True)
@click.option("--option", "options", multiple=True,
              help="key=value options of the runtime's fuse section: size (a local worker on nodes "
                   "without one; 0 = none), rpc_port.")
@click.option("--etcd-endpoint", help="The cluster's etcd: published for the object directory, and "
              "joined by a local worker.")
@click.option("--node-name", envvar="MY_NODE_NAME", help="This node's name [$MY_NODE_NAME].")
@click.option("--blob-port", type=int, default=None,
              help="Serve this node's blobs to other nodes on this port (needs --etcd-endpoint; 0 picks one).")
@click.option("--blob-host", envvar="POD_IP", default="127.0.0.1", show_default=True,
              help="The address the blob server listens on [$POD_IP]: never every interface.")
@click.option("--metrics-host", default="0.0.0.0", show_default=True)  # noqa: S104 - scraped in-cluster
@click.option("--metrics-port", type=int, default=9145, show_default=True, help="0 picks a free port.")
def bridge(socket: str, publish_dir: str, rpc_endpoints: tuple[str, ...], runtime: str | None, namespace: str,
           options: tuple[str, ...], etcd_endpoint: str | None, node_name: str | None, blob_port: int | None,
           blob_host: str, metrics_host: str, metrics_port: int) -> None:
    """Keep vineyard-config.yaml and a socket link current; serve /healthz and /metrics,
    and with --blob-port this node's blobs (readers present $FLUIDV_BLOB_TOKEN)."""
    import signal  # noqa: PLC0415

    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: PLC0415

    from fluid_core.metrics import REGISTRY, MetricsServer  # noqa: PLC0415
    from vineyard_runtime.bridge import Bridge, LocalWorker  # noqa: PLC0415

    endpoints = [e for value in (rpc_endpoints or (os.environ.get("VINEYARD_RPC_ENDPOINT", ""),))
                 for e in value.split(",") if e]
    unknown = [o for o in options if "=" not in o]
    if unknown:
        raise click.UsageError(f"--option takes key=value, got {unknown[0]!r}")
    settings = dict(o.split("=", 1) for o in options)
    local = None
    if settings.get("size", "0") not in ("", "0"):
        if not etcd_endpoint:
            raise click.UsageError("--option size=... runs a local worker: give --etcd-endpoint too")
        with reported():
            local = LocalWorker(settings["size"], os.path.join(publish_dir, "local-vineyardd.sock"), etcd_endpoint,
                                int(settings.get("rpc_port", "9600")), node_name,
                                os.path.join(publish_dir, "local-vineyardd.log"))
    if blob_port is not None and not etcd_endpoint:
        raise click.UsageError("--blob-port announces the blob server in the cluster's etcd: give --etcd-endpoint too")
    if blob_host in ("0.0.0.0", "::"):  # noqa: S104 - refused, not bound
        raise click.UsageError("--blob-host must be one address (the pod's), not every interface")
    worker = Bridge(socket, publish_dir, endpoints, local_worker=local, etcd_endpoint=etcd_endpoint,
                    blob_address=(blob_host, blob_port) if blob_port is not None else None,
                    blob_token=os.environ.get("FLUIDV_BLOB_TOKEN") or None)

    class Collector:
        def collect(self) -> Iterator[Any]:  # prometheus_client's collector protocol
            relinks = CounterMetricFamily("fluidv_bridge_relinks", "Socket links renewed after a worker restart")
            relinks.add_metric([], worker.state.relinks)
            yield relinks
            linked = GaugeMetricFamily("fluidv_bridge_linked", "1 while the worker's socket is linked")
            linked.add_metric([], 1 if worker.state.linked else 0)
            yield linked

    REGISTRY.register(Collector())
    with reported():
        server = MetricsServer(metrics_host, metrics_port, healthy=lambda: worker.state.linked).start()
    click.echo(f"bridge for {namespace}/{runtime or '-'}: {publish_dir} -> {socket}; "
               f"metrics on {metrics_host}:{server.port}", err=True)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    try:
        worker.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
