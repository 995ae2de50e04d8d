"""``fluidv op run KIND NAME``: execute one data operation inside its Job's pod."""

from __future__ import annotations

import os
from typing import Any

import click

from fluid_core.cli.errors import CommandError, reported
from fluid_core.cli.group import Group


@click.group(cls=Group)
def op() -> None:
    """Data operations, as their Jobs run them."""


@op.command("run")
@click.argument("kind", type=click.Choice(["DataLoad", "DataProcess", "DataMigrate", "DataBackup"]))
@click.argument("name")
@click.option("--namespace", default="default", show_default=True)
def run_operation(kind: str, name: str, namespace: str) -> None:
    """Run the operation against the dataset mounted in this pod (the store is found
    through $VINEYARD_CONFIG). The operator gives its Jobs the operation and the dataset's
    mounts ($FLUIDV_OPERATION, $FLUIDV_DATASET_MOUNTS); without them both are read from
    the API server."""
    import objects  # noqa: PLC0415
    from fluid_core.flow.context import StepContext  # noqa: PLC0415
    from fluid_core.flow.ops import execute  # noqa: PLC0415
    from fluid_core.models import parse  # noqa: PLC0415

    with reported():
        body, mounts = _operation(kind, name, namespace)
        resource = parse(body)
        spec: Any = resource.spec  # an operation's: each kind has a dataset
        if kind == "DataBackup":  # Fluid's pvc:// or local:// path is a volume of this pod
            from fluid_core.models.backup_location import BackupLocation  # noqa: PLC0415

            spec = spec.model_copy(update={"backup_path": BackupLocation(spec.backup_path).in_pod()})
        with objects.connect() as store:
            ctx = StepContext(store, spec.dataset.namespace or namespace, spec.dataset.name,
                              run_id=f"{kind}-{name}", operation=name)
            ctx.mounts = mounts
            ctx.replica_index = int(os.environ.get("JOB_COMPLETION_INDEX", "0"))  # a DataLoad's copies
            click.echo(execute(kind, spec, ctx))
            click.echo(f"read {ctx.stats.bytes_read} B ({ctx.stats.remote_reads} remote reads), "
                       f"wrote {ctx.stats.bytes_written} B on {ctx.node}, "
                       f"in {ctx.stats.io_seconds:.4f} s of hand-over")


def _operation(kind: str, name: str, namespace: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The operation's resource and its dataset's mounts: as the Job was given them, else
    from the API server."""
    import json  # noqa: PLC0415

    from fluid_core.models import API_VERSION  # noqa: PLC0415
    from fluid_core.reconcilers.operation import MOUNTS_ENV, OPERATION_ENV  # noqa: PLC0415

    if os.environ.get(OPERATION_ENV):
        try:
            return json.loads(os.environ[OPERATION_ENV]), list(json.loads(os.environ.get(MOUNTS_ENV) or "[]"))
        except ValueError as exc:
            raise CommandError(f"${OPERATION_ENV} or ${MOUNTS_ENV} is not JSON: {exc}") from None
    from fluid_core.kube import KubeClient, Ref  # noqa: PLC0415

    kube = KubeClient.from_environment()
    body = kube.get(Ref(API_VERSION, kind, namespace, name))
    if body is None:
        raise CommandError(f"no {kind} {namespace}/{name}")
    from fluid_core.models import parse  # noqa: PLC0415

    dataset: Any = parse(body).spec.dataset  # type: ignore[union-attr]  # every operation has one
    found = kube.get(Ref(API_VERSION, "Dataset", dataset.namespace or namespace, dataset.name)) or {}
    return body, list((found.get("spec") or {}).get("mounts") or [])


@op.command("restore")
@click.argument("dataset")
@click.option("--namespace", default="default", show_default=True)
@click.option("--path", "location", required=True, help="The backup, as this pod sees it.")
def restore_dataset_command(dataset: str, namespace: str, location: str) -> None:
    """Restore a backup into DATASET (its ``dataRestoreLocation``, as the operator's
    restore Job runs it), unless the dataset holds objects already."""
    import objects  # noqa: PLC0415
    from fluid_core.flow.context import StepContext  # noqa: PLC0415
    from fluid_core.flow.ops import restore_dataset  # noqa: PLC0415

    with reported(), objects.connect() as store:
        click.echo(restore_dataset(StepContext(store, namespace, dataset, operation=f"{dataset}-restore"), location))
