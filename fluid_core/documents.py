"""Read the custom resources of a multi-document YAML file."""

from __future__ import annotations

from typing import Any

import yaml

from fluid_core.errors import FluidError, InvalidResource
from fluid_core.models import AnyResource, parse


def load_documents(path: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``path``; FluidError when unreadable."""
    try:
        with open(path) as handle:
            return [doc for doc in yaml.safe_load_all(handle) if doc is not None]
    except OSError as exc:
        raise FluidError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise FluidError(f"{path} is not valid YAML: {exc}") from None


def parse_all(documents: list[dict[str, Any]]) -> tuple[list[AnyResource], list[InvalidResource]]:
    """Every valid resource, and one InvalidResource per invalid document."""
    resources: list[AnyResource] = []
    problems: list[InvalidResource] = []
    for document in documents:
        try:
            resources.append(parse(document))
        except InvalidResource as exc:
            problems.append(exc)
    return resources, problems
