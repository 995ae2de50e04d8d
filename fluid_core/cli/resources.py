"""``fluidv crds``, ``fluidv validate`` and ``fluidv render``."""

from __future__ import annotations

import click

from fluid_core.cli.errors import CommandError


@click.command()
@click.option("--out", "out_dirs", multiple=True, default=("crds",), show_default=True,
              help="Directory to write to (repeatable; the chart's crds/ is a link to crds/).")
def crds(out_dirs: tuple[str, ...]) -> None:
    """Write the CustomResourceDefinitions generated from the models."""
    from fluid_core.crds import write_crds  # noqa: PLC0415

    for out_dir in out_dirs:
        for path in write_crds(out_dir):
            click.echo(path)


@click.command(short_help="Check resources offline, as `fluidv run` would; list every problem.")
@click.argument("paths", nargs=-1, metavar="PATH...")
@click.option("-f", "--filename", "files", multiple=True, metavar="PATH", help="A file or folder (repeatable), as kubectl takes them.")
@click.option("-R", "--recursive", is_flag=True, help="Read the folders' subfolders too.")
@click.option("--mode", type=click.Choice(["local", "kubernetes"]), default="local", show_default=True,
              help="Where the resources are meant to run: local also checks this machine's paths, "
                   "scripts and functions, as `fluidv run` does.")
def validate(paths: tuple[str, ...], files: tuple[str, ...], recursive: bool, mode: str) -> None:
    """Check the resources in PATH... (files, and folders' .yaml, .yml and .json files) as
    one set, offline: each document, then the flow they make (runAfter and dataset
    references, cycles, processors, load paths, export targets), as `fluidv run` checks
    it before anything runs. Every problem is printed with its file, line and field.
    Exits 1 when anything is invalid."""
    if not paths + files:
        raise click.UsageError("give at least one file or folder to validate")
    invalid = _check_set(list(paths + files), recursive=recursive, mode=mode)
    if invalid:
        raise CommandError(f"{invalid} problem(s) found")


def _check_set(paths: list[str], *, recursive: bool, mode: str) -> int:
    """Print a line per resource of ``paths`` (``ok``; ``invalid``, ``warning`` and
    ``note`` lines on stderr); the number of problems."""
    from fluid_core.documents import load_set  # noqa: PLC0415
    from fluid_core.errors import InvalidResource  # noqa: PLC0415
    from fluid_core.flow.validate import cluster_checks, flow_problems  # noqa: PLC0415
    from fluid_core.models import AnyResource, parse  # noqa: PLC0415
    from fluid_core.models.base import not_applied_warnings  # noqa: PLC0415

    documents, unreadable = load_set(paths, recursive=recursive)
    for _, message in unreadable:
        click.echo(f"error   {message}", err=True)
    count = len(unreadable)
    if not documents and not unreadable:
        click.echo(f"error   no resources in {' '.join(paths)}", err=True)
        count += 1
    parsed: list[tuple[str, AnyResource | InvalidResource]] = []
    for document in documents:
        try:
            parsed.append((document.source, parse(document.data)))
        except InvalidResource as exc:
            parsed.append((document.source, exc))
    resources = [item for _, item in parsed if not isinstance(item, InvalidResource)]
    flow, notes = flow_problems(resources, local=mode == "local"), cluster_checks(resources, local=mode == "local")
    for source, item in parsed:
        where = f"{item.kind}/{item.name} ({source})"
        problems = (item.problems if isinstance(item, InvalidResource)
                    else [(p.field, p.message) for p in flow if (p.kind, p.name) == (item.kind, item.name)])
        for field, message in problems:
            click.echo(f"invalid {where}: {field}: {message}", err=True)
        count += len(problems)
        if isinstance(item, InvalidResource):
            continue
        if not problems:
            click.echo(f"ok      {where}")
        for warning in not_applied_warnings(item.spec, mode):
            click.echo(f"warning {where}: {warning}", err=True)
        for note in notes:
            if (note.kind, note.name) == (item.kind, item.name):
                click.echo(f"note    {where}: {note.field}: {note.message}", err=True)
    return count


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
