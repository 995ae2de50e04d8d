"""``fluidv crds``, ``fluidv validate`` and ``fluidv render``."""

from __future__ import annotations

import click

from fluid_core.cli.errors import CommandError


@click.command()
@click.option("--out", "out_dirs", multiple=True, default=("crds", "charts/fluid-vineyard/crds"), show_default=True,
              help="Directory to write to (repeatable).")
def crds(out_dirs: tuple[str, ...]) -> None:
    """Write the CustomResourceDefinitions generated from the models."""
    from fluid_core.crds import write_crds  # noqa: PLC0415

    for out_dir in out_dirs:
        for path in write_crds(out_dir):
            click.echo(path)


@click.command()
@click.argument("path", type=click.Path(dir_okay=False))
def validate(path: str) -> None:
    """Check the custom resources in PATH offline; print every problem with its field."""
    from fluid_core.documents import load_documents, parse_all  # noqa: PLC0415
    from fluid_core.errors import FluidError  # noqa: PLC0415

    try:
        resources, problems = parse_all(load_documents(path))
    except FluidError as exc:
        raise CommandError(str(exc)) from None
    for resource in resources:
        click.echo(f"ok      {resource.kind}/{resource.name}")
        for warning in _not_applied(resource):
            click.echo(f"warning {resource.kind}/{resource.name}: {warning}", err=True)
    for problem in problems:
        for field, message in problem.problems:
            click.echo(f"invalid {problem.kind}/{problem.name}: {field}: {message}", err=True)
    if problems:
        raise click.exceptions.Exit(1)


def _not_applied(resource: object) -> list[str]:
    from fluid_core.models.base import not_applied_warnings  # noqa: PLC0415

    spec = getattr(resource, "spec", None)
    return not_applied_warnings(spec, "local") if spec is not None else []


@click.command()
@click.argument("path", type=click.Path(dir_okay=False))
def render(path: str) -> None:
    """Print every Kubernetes object the operator would create for PATH's Datasets and
    VineyardRuntimes, as multi-document YAML."""
    import yaml  # noqa: PLC0415

    from fluid_core.documents import load_documents, parse_all  # noqa: PLC0415
    from fluid_core.errors import FluidError  # noqa: PLC0415
    from fluid_core.reconcilers.render import render_objects  # noqa: PLC0415

    try:
        resources, problems = parse_all(load_documents(path))
    except FluidError as exc:
        raise CommandError(str(exc)) from None
    if problems:
        raise CommandError("; ".join(str(p) for p in problems) + f" (see `fluidv validate {path}`)")
    try:
        objects = render_objects(resources)
    except FluidError as exc:
        raise CommandError(str(exc)) from None
    click.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)
