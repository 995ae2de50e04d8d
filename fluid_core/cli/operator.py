"""``fluidv operator``: run the kopf operator (in a cluster, or against $KUBECONFIG)."""

from __future__ import annotations

import click


@click.command()
@click.option("--namespace", "namespaces", multiple=True,
              help="Watch only these namespaces (repeatable); all namespaces by default.")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              help="Liveness endpoint served by kopf.")
@click.option("--verbose", is_flag=True, help="Log every handler call.")
def operator(namespaces: tuple[str, ...], liveness: str, verbose: bool) -> None:
    """Reconcile Datasets and VineyardRuntimes into etcd, vineyardd and the client bridge."""
    import kopf  # noqa: PLC0415

    import fluid_core.operator.handlers  # noqa: F401,PLC0415 - registers the handlers

    kopf.configure(verbose=verbose)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=list(namespaces) or None,
        liveness_endpoint=liveness,
        standalone=True,
    )
