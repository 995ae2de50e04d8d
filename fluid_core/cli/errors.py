"""Turn project errors into one-line messages and exit codes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO, Any

import click

from fluid_core.errors import FluidError
from objects.errors import ObjectsError
from vineyard_runtime.errors import VineyardRuntimeError


class CommandError(click.ClickException):
    """A one-line error printed as ``error: <message>`` with exit code 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True, file=file)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Re-raise project errors (all three packages) as CommandError so the CLI prints them cleanly."""
    try:
        yield
    except (VineyardRuntimeError, FluidError, ObjectsError) as exc:
        raise CommandError(str(exc)) from None
