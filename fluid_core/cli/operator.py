"""``fluidv operator``: run the kopf operator (in a cluster, or against $KUBECONFIG);
``fluidv webhook``: serve placement admissions from a view file (offline trials)."""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING

import click

from fluid_core.cli.errors import reported

if TYPE_CHECKING:
    from fluid_core.placement import PlacementConfig
    from fluid_core.reconcilers.policy import Policy


def _placement_config(path: str | None) -> PlacementConfig | None:
    from fluid_core.placement import PlacementConfig  # noqa: PLC0415

    return PlacementConfig.from_file(path) if path else None


def _policy(path: str) -> Policy:
    import yaml  # noqa: PLC0415

    from fluid_core.reconcilers.policy import Policy, PolicyError  # noqa: PLC0415

    try:
        with open(path) as handle:
            return Policy.from_mapping(yaml.safe_load(handle))
    except (PolicyError, yaml.YAMLError, TypeError, ValueError) as exc:
        raise click.UsageError(f"--policy {path}: {exc}") from None


def _certificates(cert: str | None, key: str | None, host: str) -> tuple[str, str]:
    if bool(cert) != bool(key):
        raise click.UsageError("give both --cert and --key, or neither for a self-signed pair")
    if cert and key:
        return cert, key
    from fluid_core.operator.certs import self_signed  # noqa: PLC0415

    directory = tempfile.mkdtemp(prefix="fluidv-webhook-")
    cert, key = self_signed([host, "localhost"], directory)
    click.echo(f"self-signed certificate (its own CA): {cert}", err=True)
    return cert, key


@click.command()
@click.option("--namespace", "namespaces", multiple=True,
              help="Watch only these namespaces (repeatable); all namespaces by default.")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              help="Liveness endpoint served by kopf.")
@click.option("--webhook-port", type=int, default=9443, show_default=True,
              help="HTTPS port of the placement webhook; 0 disables it.")
@click.option("--webhook-host", default="0.0.0.0", show_default=True,  # noqa: S104 - reached through its Service
              help="Address the webhook listens on.")
@click.option("--webhook-cert", type=click.Path(exists=True, dir_okay=False), help="Serving certificate (PEM).")
@click.option("--webhook-key", type=click.Path(exists=True, dir_okay=False), help="Its private key (PEM).")
@click.option("--placement-config", type=click.Path(exists=True, dir_okay=False),
              help="YAML with locality tiers and weights (a mounted ConfigMap key).")
@click.option("--metrics-port", type=int, default=9090, show_default=True,
              help="Port of /metrics (reconciles, admissions); 0 disables it.")
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False),
              help="YAML of what a CR may ask for: allowedImages, hostPathRoots, podSecurity, serviceAccounts.")
@click.option("--verbose", is_flag=True, help="Log every handler call.")
def operator(namespaces: tuple[str, ...], liveness: str, webhook_port: int, webhook_host: str,
             webhook_cert: str | None, webhook_key: str | None, placement_config: str | None, metrics_port: int,
             policy_file: str | None, verbose: bool) -> None:
    """Reconcile Datasets and VineyardRuntimes; place pods near their data."""
    import kopf  # noqa: PLC0415

    import fluid_core.operator.handlers  # noqa: PLC0415 - registers the handlers
    import fluid_core.operator.operations  # noqa: F401,PLC0415 - and those of the data operations
    from fluid_core.operator import placement_feed, settings  # noqa: PLC0415

    if policy_file:
        settings.configure_policy(_policy(policy_file))

    if webhook_port:
        with reported():
            cert, key = _certificates(webhook_cert, webhook_key, "localhost")
            placement_feed.configure_webhook(placement_feed.WebhookSettings(
                host=webhook_host, port=webhook_port, certfile=cert, keyfile=key,
                config=_placement_config(placement_config)))
    if metrics_port:
        from fluid_core.metrics import MetricsServer  # noqa: PLC0415

        with reported():
            MetricsServer("0.0.0.0", metrics_port).start()  # noqa: S104 - scraped in-cluster
    kopf.configure(verbose=verbose)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness,
        standalone=True,
    )


@click.command()
@click.option("--view", "view_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSON or YAML cluster view: {nodes, datasets, objects}.")
@click.option("--placement-config", type=click.Path(exists=True, dir_okay=False),
              help="YAML with locality tiers and weights.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=9443, show_default=True, help="0 picks a free port.")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="Serving certificate (PEM).")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Its private key (PEM).")
def webhook(view_file: str, placement_config: str | None, host: str, port: int,
            cert: str | None, key: str | None) -> None:
    """Serve placement admissions for a fixed cluster view until interrupted."""
    import signal  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import threading  # noqa: PLC0415

    import yaml  # noqa: PLC0415

    from fluid_core.operator.webhook import WebhookServer  # noqa: PLC0415
    from fluid_core.placement import ClusterView  # noqa: PLC0415

    with reported():
        with open(view_file) as handle:
            view = ClusterView.from_dict(yaml.safe_load(handle) or {})
        config = _placement_config(placement_config)
        cert, key = _certificates(cert, key, host)
        server = WebhookServer(lambda: view, config, host=host, port=port, certfile=cert, keyfile=key).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        click.echo(f"serving {server.url}/mutate-pods")
        sys.stdout.flush()
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
