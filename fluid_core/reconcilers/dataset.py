"""The Dataset reconciler: bound to its runtime once that runtime is ready."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fluid_core.reconcilers.conditions import set_condition
from fluid_core.reconcilers.observed import DatasetObserved
from vineyard_runtime.quantity import human_bytes


@dataclass
class DatasetOutcome:
    status: dict[str, Any] = field(default_factory=dict)


def reconcile_dataset(name: str, namespace: str, observed: DatasetObserved,
                      previous_status: dict[str, Any] | None, *, now: str) -> DatasetOutcome:
    """``NotBound`` until the same-named runtime is ready, then ``Bound``."""
    previous = dict(previous_status or {})
    conditions = list(previous.get("conditions", []))
    if observed.runtime_exists and observed.runtime_ready:
        conditions = set_condition(conditions, "Ready", True, "DatasetReady",
                                   f"bound to VineyardRuntime {namespace}/{name}", now)
        status = {
            **previous,
            "phase": "Bound",
            "runtimes": [{"name": name, "namespace": namespace, "category": "Accelerate", "type": "vineyard"}],
            "conditions": conditions,
        }
    else:
        why = "the runtime is not ready yet" if observed.runtime_exists else "no VineyardRuntime of this name yet"
        conditions = set_condition(conditions, "Ready", False, "NotBound", why, now)
        status = {**previous, "phase": "NotBound", "runtimes": [], "conditions": conditions}
    if observed.cache_capacity is not None:  # Fluid's SDK reads cacheStates (report_status("cache"))
        status["cacheStates"] = {**(previous.get("cacheStates") or {}),
                                 **cache_states(observed.cache_capacity, observed.cached)}
    return DatasetOutcome(status=status)


def cache_states(capacity: int, cached: int | None) -> dict[str, str]:
    """Fluid's ``cacheStates``: the workers' capacity and, when known, the bytes of the
    dataset's objects and their share of it."""
    states = {"cacheCapacity": human_bytes(capacity)}
    if cached is not None:
        states["cached"] = human_bytes(cached)
        states["cachedPercentage"] = f"{100 * cached / capacity:.1f}%" if capacity else "0.0%"
    return states


def deletion_blockers(status: dict[str, Any] | None, observed: DatasetObserved) -> list[str]:
    """Why the dataset cannot be deleted yet (empty: it can)."""
    reasons = []
    if observed.pods_using:
        reasons.append(f"pods still mount it: {', '.join(observed.pods_using)}")
    locks = (status or {}).get("operationRef") or {}
    held = [f"{op} {names}" for op, names in sorted(locks.items()) if names]
    if held:
        reasons.append(f"operations hold its lock: {'; '.join(held)}")
    return reasons
