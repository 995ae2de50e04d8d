"""Errors of the generic layer."""

from __future__ import annotations


class FluidError(Exception):
    """Base of every error raised by ``fluid_core``."""


class InvalidResource(FluidError, ValueError):
    """A custom resource does not validate; ``problems`` lists (field path, message)."""

    def __init__(self, kind: str, name: str, problems: list[tuple[str, str]]) -> None:
        self.kind, self.name, self.problems = kind, name, problems
        lines = "; ".join(f"{path}: {message}" for path, message in problems)
        super().__init__(f"{kind} {name!r} is invalid: {lines}")
