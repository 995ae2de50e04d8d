"""The Dataset reconciler: bound to its runtime once that runtime is ready (and its
``dataRestoreLocation`` restored, by a Job of its own, if it names one)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fluid_core.models.backup_location import BackupLocation
from fluid_core.models.dataset import DatasetStatus, RuntimeRef
from fluid_core.models.runtime import project_image_ref
from fluid_core.reconcilers.conditions import set_condition, typed
from fluid_core.reconcilers.observed import DatasetObserved
from fluid_core.reconcilers.operation import (
    BACKOFF_LIMIT,
    dataset_volume,
)
from vineyard_runtime.naming import derived_name, safe_value
from vineyard_runtime.kube.manifests import MANAGED_BY
from vineyard_runtime.quantity import human_bytes

#: The condition a Dataset carries once its ``dataRestoreLocation`` was restored.
RESTORED = "Restored"


@dataclass
class DatasetOutcome:
    status: DatasetStatus = field(default_factory=DatasetStatus)
    desired: list[dict[str, Any]] = field(default_factory=list)


def restore_job_name(name: str) -> str:
    return derived_name(name, "-restore")


def restore_job(name: str, namespace: str, restore: Any, owner: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The Job restoring ``restore`` (a ``DataRestoreLocation``) into the dataset: the
    dataset's volume for the store, the backup's volume, and on ``nodeName`` for ``local://``."""
    location = BackupLocation(restore.path)
    volume, mount, env = dataset_volume(name, "/data")
    volumes, mounts = [volume], [mount]
    backup = location.volume()
    if backup is not None:
        volumes.append(backup[0])
        mounts.append(backup[1])
    pod: dict[str, Any] = {"restartPolicy": "Never", "volumes": volumes, "containers": [{
        "name": "restore", "image": project_image_ref(), "env": env, "volumeMounts": mounts,
        "command": ["fluidv", "op", "restore", name, "--namespace", namespace, "--path", location.in_pod()]}]}
    if restore.node_name:
        pod["nodeSelector"] = {"kubernetes.io/hostname": restore.node_name}
    labels = {"app.kubernetes.io/managed-by": MANAGED_BY, "fluid.io/dataset": safe_value(f"{namespace}-{name}")}
    metadata: dict[str, Any] = {"name": restore_job_name(name), "namespace": namespace, "labels": labels}
    if owner:
        metadata["ownerReferences"] = owner
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": {
        "backoffLimit": BACKOFF_LIMIT, "template": {"metadata": {"labels": labels}, "spec": pod}}}


def _restored(conditions: list[dict[str, Any]]) -> bool:
    return any(c.get("type") == RESTORED and c.get("status") == "True" for c in conditions)


def reconcile_dataset(name: str, namespace: str, observed: DatasetObserved,
                      previous_status: DatasetStatus | Mapping[str, Any] | None, *, now: str, restore: Any = None,
                      owner: list[dict[str, Any]] | None = None) -> DatasetOutcome:
    """``NotBound`` until the same-named runtime is ready (and ``restore``, a
    ``dataRestoreLocation``, restored), then ``Bound`` for as long as the runtime exists
    (its readiness in the ``Ready`` condition); ``Failed`` when the restore failed."""
    previous = DatasetStatus.read(previous_status)
    conditions = [c.to_dict() for c in previous.conditions]
    out = DatasetOutcome()
    ready = observed.runtime_exists and observed.runtime_ready
    if ready and restore is not None and not _restored(conditions):
        out.desired.append(restore_job(name, namespace, restore, owner))
        job = observed.restore_job
        if job is not None and job.succeeded > 0:
            conditions = set_condition(conditions, RESTORED, True, "Restored", f"restored from {restore.path}", now)
        else:
            failed = job is not None and job.failed > BACKOFF_LIMIT
            why = (f"restoring {restore.path} failed {job.failed} times; see the logs of Job "
                   f"{restore_job_name(name)}" if failed else f"restoring {restore.path} (Job {restore_job_name(name)})")
            conditions = set_condition(conditions, "Ready", False, "RestoreFailed" if failed else "Restoring", why, now)
            out.status = previous.model_copy(update={"phase": "Failed" if failed else "NotBound", "runtimes": [],
                                                     "conditions": typed(conditions)})
            return out
    if ready:
        conditions = set_condition(conditions, "Ready", True, "DatasetReady",
                                   f"bound to VineyardRuntime {namespace}/{name}", now)
        status = previous.model_copy(update={"phase": "Bound", "runtimes": [RuntimeRef(name=name, namespace=namespace)],
                                             "conditions": typed(conditions)})
    elif observed.runtime_exists and previous.phase == "Bound":
        # as in Fluid, a bound dataset stays bound while its runtime exists (a worker that
        # restarts does not unbind it); the Ready condition says what is not ready
        conditions = set_condition(conditions, "Ready", False, "RuntimeNotReady",
                                   f"VineyardRuntime {namespace}/{name} is not ready (see its status)", now)
        status = previous.model_copy(update={"conditions": typed(conditions)})
    else:
        why = "the runtime is not ready yet" if observed.runtime_exists else "no VineyardRuntime of this name yet"
        conditions = set_condition(conditions, "Ready", False, "NotBound", why, now)
        status = previous.model_copy(update={"phase": "NotBound", "runtimes": [], "conditions": typed(conditions)})
    if observed.cache_capacity is not None:  # Fluid's SDK reads cacheStates (report_status("cache"))
        status.cache_states = {**previous.cache_states, **cache_states(observed.cache_capacity, observed.cached)}
    out.status = status
    return out


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
