"""The ``fluidv`` command line. Subcommands import what they need when they run."""

from __future__ import annotations

import click

from fluid_core.cli.bridge import bridge
from fluid_core.cli.cluster import cluster
from fluid_core.cli.demo import demo
from fluid_core.cli.group import Group
from fluid_core.cli.mount import mount
from fluid_core.cli.op import op
from fluid_core.cli.operator import operator, webhook
from fluid_core.cli.resources import crds, render, validate
from fluid_core.cli.run import run


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """Print fluidv's version and vineyardd's (the vineyard-bdist wheel), then exit."""
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    click.echo(f"fluidv {of('fluid-vineyard')} (vineyardd {of('vineyard-bdist')})")
    ctx.exit()


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version (and vineyardd's) and exit.")
def cli() -> None:
    """fluid-vineyard: a shared-memory object cache for data pipelines."""


cli.add_command(cluster)
cli.add_command(demo)
for command in (crds, validate, render, operator, webhook, run, op, bridge, mount):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    try:
        # without standalone mode click returns (not raises) the code of a command that
        # ended with click.exceptions.Exit, and the command's return value otherwise
        code = cli.main(args=argv, prog_name="fluidv", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return code if isinstance(code, int) else 0

