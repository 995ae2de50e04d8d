"""The Dataset handlers: bind it to its runtime, restore it, and hold its deletion
while pods mount it or operations lock it."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from fluid_core.errors import InvalidResource
from fluid_core.kube import KubeClient, Ref
from fluid_core.models import GROUP, VERSION, Dataset, VineyardRuntime, parse
from fluid_core.operator import placement_feed
from fluid_core.operator.cycle import (
    API,
    RESYNC_SECONDS,
    apply_all,
    client,
    job_counts,
    parse_live,
    resync,
    state_changed,
)
from fluid_core.reconcilers.dataset import (
    deletion_blockers,
    reconcile_dataset,
    restore_job_name,
)
from fluid_core.reconcilers.observed import DatasetObserved
from fluid_core.reconcilers.runtime import runtime_ready
from fluid_core.stamps import now_stamp
from vineyard_runtime.errors import InvalidSpec
from vineyard_runtime.quantity import parse_quantity

_log = logging.getLogger(__name__)


def pods_using(kube: KubeClient, namespace: str, name: str) -> tuple[str, ...]:
    """The pods of ``namespace`` that mount the dataset's volume and have not ended."""
    return tuple(
        f"{namespace}/{p['metadata']['name']}"
        for p in kube.list(Ref("v1", "Pod", namespace))
        if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")  # an ended pod uses nothing
        and any((v.get("persistentVolumeClaim") or {}).get("claimName") == name
                for v in (p.get("spec") or {}).get("volumes", []))
    )


def observe_dataset(kube: KubeClient, namespace: str, name: str, deleting: bool = False) -> DatasetObserved:
    """What the dataset's status depends on; the pods using it (a list of every pod of
    the namespace) only when it is being deleted, the one time they matter."""
    runtime = kube.get(Ref(API, "VineyardRuntime", namespace, name))
    status = (runtime or {}).get("status") or {}
    ready = runtime_ready(status)
    users = pods_using(kube, namespace, name) if deleting else ()
    capacity = None
    if runtime is not None:
        try:
            model = parse(dict(runtime))
            assert isinstance(model, VineyardRuntime)
            capacity = int(status.get("workerNumberReady") or 0) * parse_quantity(model.spec.memory_quota())
        except (InvalidResource, InvalidSpec):
            capacity = None  # the runtime's own status says what is wrong with it
    restore = kube.get(Ref("batch/v1", "Job", namespace, restore_job_name(name)))
    return DatasetObserved(runtime_exists=runtime is not None, runtime_ready=ready,
                           pods_using=users, cache_capacity=capacity,
                           cached=placement_feed.CACHE.cached_bytes(f"{namespace}/{name}"),
                           restore_job=None if restore is None else job_counts(restore))


def resync_dataset(kube: KubeClient, namespace: str, name: str) -> None:
    """Apply the dataset's restore Job, if it needs one, and patch what changed in its status."""

    def sync(body: dict[str, Any], dataset: Any, previous: dict[str, Any]) -> dict[str, Any]:
        observed = observe_dataset(kube, namespace, name)
        owner = [{"apiVersion": API, "kind": "Dataset", "name": name, "uid": body["metadata"].get("uid"),
                  "controller": True, "blockOwnerDeletion": True}] if body["metadata"].get("uid") else None
        outcome = reconcile_dataset(name, namespace, observed, dict(previous), now=now_stamp(),
                                    restore=dataset.spec.data_restore_location, owner=owner)
        apply_all(kube, outcome.desired, _log)
        return outcome.status.to_dict()

    resync(kube, "Dataset", namespace, name, sync)


@kopf.on.resume(GROUP, VERSION, "datasets")
@kopf.on.create(GROUP, VERSION, "datasets")
@kopf.on.update(GROUP, VERSION, "datasets", field="spec")
@kopf.timer(GROUP, VERSION, "datasets", interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def reconcile_dataset_handler(body: Any, patch: kopf.Patch, logger: Any, **_: Any) -> None:
    """``NotBound`` until the same-named runtime is ready, then ``Bound``."""
    if isinstance(parse_live(body, patch, logger), Dataset):
        resync_dataset(client(), body["metadata"]["namespace"], body["metadata"]["name"])


@kopf.on.event(GROUP, VERSION, "vineyardruntimes")
def runtime_changed(body: Any, type: str | None, **_: Any) -> None:  # noqa: A002
    """The runtime became ready or stopped being ready: re-sync its dataset now."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    ready = runtime_ready(status)
    if meta.get("namespace") and meta.get("name") and state_changed(body, (ready,), type == "DELETED"):
        resync_dataset(client(), meta["namespace"], meta["name"])


@kopf.on.delete(GROUP, VERSION, "datasets")
def delete_dataset_handler(body: Any, **_: Any) -> None:
    """Wait while pods mount the dataset or operations hold its lock."""
    meta = body["metadata"]
    observed = observe_dataset(client(), meta.get("namespace", "default"), meta["name"], deleting=True)
    blockers = deletion_blockers(dict(body.get("status") or {}), observed)
    if blockers:
        message = "deletion waits: " + "; ".join(blockers)
        kopf.warn(body, reason="DeletionBlocked", message=message)
        raise kopf.TemporaryError(message, delay=RESYNC_SECONDS)
