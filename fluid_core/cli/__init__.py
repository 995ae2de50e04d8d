"""The ``fluidv`` command line. Subcommands import what they need when they run."""

from __future__ import annotations

import click

from fluid_core.cli.bridge import bridge
from fluid_core.cli.cluster import cluster
from fluid_core.cli.demo import demo
from fluid_core.cli.mount import mount
from fluid_core.cli.op import op
from fluid_core.cli.operator import operator, webhook
from fluid_core.cli.resources import crds, render, validate
from fluid_core.cli.run import run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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

