"""``fluidv bridge``: publish the node's Vineyard worker into a dataset mount."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import click

from fluid_core.cli.errors import reported
from vineyard_runtime.spec import BRIDGE_METRICS_PORT, RPC_PORT


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
@click.option("--view", is_flag=True, help="Keep the dataset's objects mounted as files (FUSE, read-only, "
              "for every user) in PUBLISH_DIR/objects; needs /dev/fuse and the right to mount.")
@click.option("--metrics-host", default="0.0.0.0", show_default=True)  # noqa: S104 - scraped in-cluster
@click.option("--metrics-port", type=int, default=BRIDGE_METRICS_PORT, show_default=True, help="0 picks a free port.")
def bridge(socket: str, publish_dir: str, rpc_endpoints: tuple[str, ...], runtime: str | None, namespace: str,
           options: tuple[str, ...], etcd_endpoint: str | None, node_name: str | None, blob_port: int | None,
           blob_host: str, view: bool, metrics_host: str, metrics_port: int) -> None:
    """Keep vineyard-config.yaml and a socket link current; serve /healthz and /metrics,
    and with --blob-port this node's blobs (readers present $FLUIDV_BLOB_TOKEN)."""
    import signal  # noqa: PLC0415

    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: PLC0415

    from fluid_core.metrics import REGISTRY, MetricsServer  # noqa: PLC0415
    from vineyard_runtime.node.bridge import Bridge, LocalWorker  # noqa: PLC0415

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
                                int(settings.get("rpc_port", RPC_PORT)), node_name,
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
    viewer = Viewer(worker, f"{namespace}/{runtime or os.path.basename(publish_dir.rstrip('/'))}/") if view else None
    with reported():  # ready once a worker is linked, and with --view once its objects show as files
        server = MetricsServer(metrics_host, metrics_port, healthy=lambda: worker.state.linked and (
            viewer is None or viewer.mount is not None)).start()
    click.echo(f"bridge for {namespace}/{runtime or '-'}: {publish_dir} -> {socket}; "
               f"metrics on {metrics_host}:{server.port}", err=True)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    if viewer is not None:
        threading.Thread(target=viewer.run, name="view", daemon=True).start()
    try:
        worker.run()
    except KeyboardInterrupt:
        pass
    finally:
        if viewer is not None:
            viewer.stop()
        server.stop()


#: the folder of the published directory where the FUSE view shows the dataset's objects
VIEW = "objects"


class Viewer:
    """Keeps the FUSE view of ``prefix`` mounted in the bridge's ``objects/`` once the
    bridge links a worker: a FUSE process that dies is remounted, one that cannot start is
    tried again, later each time."""

    def __init__(self, bridge: Any, prefix: str) -> None:
        self.bridge, self.prefix = bridge, prefix
        self.mount: Any = None
        self._stop = threading.Event()

    def run(self) -> None:
        from objects.errors import ObjectsError  # noqa: PLC0415
        from objects.fusemount import MountSupervisor  # noqa: PLC0415
        from vineyard_runtime.plumbing.restarts import Backoff  # noqa: PLC0415

        point = os.path.join(self.bridge.publish_dir, VIEW)
        backoff = Backoff()
        while not self._stop.is_set():
            if not self.bridge.state.linked:
                self._stop.wait(0.2)
                continue
            os.makedirs(point, exist_ok=True)
            mount = MountSupervisor(point, self.prefix, config=self.bridge.config_path, allow_other=True,
                                    log_path=os.path.join(os.path.dirname(self.bridge.publish_dir), "view.log"))
            try:
                mount.start()
            except ObjectsError as exc:
                click.echo(f"the FUSE view did not mount: {exc}", err=True)
                self._stop.wait(backoff.schedule())
                continue
            self.mount = mount
            click.echo(f"{self.prefix} shown as files in {point}", err=True)
            mount.watch()  # until stop()
            return

    def stop(self) -> None:
        """Stop keeping the view, and unmount it (the bridge is going away)."""
        self._stop.set()
        if self.mount is not None:
            self.mount.stop()
        if self.mount is not None:
            self.mount.interrupt()
            self.mount.stop()
