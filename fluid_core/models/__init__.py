"""API models of group ``data.fluid.io/v1alpha1``: the one source of truth for CRDs,
validation and the reconcilers."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from fluid_core.errors import InvalidResource
from fluid_core.models.base import API_VERSION, GROUP, VERSION, Resource
from fluid_core.models.dataset import Dataset, DatasetPhase
from fluid_core.models.operations import (
    DataBackup,
    DataLoad,
    DataMigrate,
    DataProcess,
    OperationPhase,
)
from fluid_core.models.runtime import RuntimePhase, VineyardRuntime

#: Every resource this API has: what ``parse`` returns.
AnyResource = Dataset | VineyardRuntime | DataLoad | DataProcess | DataMigrate | DataBackup

KINDS: dict[str, type[AnyResource]] = {
    cls.model_fields["kind"].default: cls
    for cls in (Dataset, VineyardRuntime, DataLoad, DataProcess, DataMigrate, DataBackup)
}


def _path(location: tuple[Any, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse(document: dict[str, Any]) -> AnyResource:
    """The typed resource of ``document``; InvalidResource listing every problem."""
    if not isinstance(document, dict):
        raise InvalidResource("document", "?", [("", "is not a mapping")])
    kind = document.get("kind")
    name = str((document.get("metadata") or {}).get("name", "?"))
    if document.get("apiVersion") != API_VERSION:
        raise InvalidResource(str(kind), name, [("apiVersion", f"must be {API_VERSION}, got {document.get('apiVersion')!r}")])
    cls = KINDS.get(str(kind))
    if cls is None:
        raise InvalidResource(str(kind), name, [("kind", f"must be one of {', '.join(KINDS)}")])
    try:
        return cls.model_validate(document)
    except ValidationError as exc:
        problems = [(_path(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
        raise InvalidResource(cls.__name__, name, problems) from None


__all__ = [
    "API_VERSION", "AnyResource", "GROUP", "KINDS", "VERSION", "DataBackup", "DataLoad", "DataMigrate",
    "DataProcess", "Dataset", "DatasetPhase", "OperationPhase", "Resource", "RuntimePhase",
    "VineyardRuntime", "parse",
]
