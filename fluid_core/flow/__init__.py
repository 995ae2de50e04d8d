"""Data operations and DataFlow on the local cluster: formats, step context, runner.

The names below load on first use, so that a module of this package (the reconcilers
use ``mounts`` and ``backup_location``) does not import the runner and the object store."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"StepContext": "context", "OperationFailed": "ops", "LocalRunner": "runner",
          "OperationRun": "runner", "FlowInvalid": "validate"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = ["FlowInvalid", "LocalRunner", "OperationFailed", "OperationRun", "StepContext"]
