"""Every object the operator would create for a set of resources (a dry run)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fluid_core.errors import FluidError
from fluid_core.models import Dataset, Resource, VineyardRuntime
from fluid_core.reconcilers.engine import VineyardEngine
from fluid_core.reconcilers.translate import kube_runtime


def render_objects(resources: Sequence[Resource]) -> list[dict[str, Any]]:
    """Objects for each VineyardRuntime whose same-named Dataset is among ``resources``."""
    datasets = {(r.namespace, r.name): r for r in resources if isinstance(r, Dataset)}
    objects: list[dict[str, Any]] = []
    for runtime in (r for r in resources if isinstance(r, VineyardRuntime)):
        dataset = datasets.get((runtime.namespace, runtime.name))
        if dataset is None:
            raise FluidError(
                f"VineyardRuntime {runtime.namespace}/{runtime.name} has no Dataset of the same "
                "namespace and name in this file; a runtime serves the dataset it is named after"
            )
        objects += VineyardEngine(kube_runtime(runtime, dataset)).all_objects()
    return objects
