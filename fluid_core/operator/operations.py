"""kopf handlers of the data operations (DataLoad, DataProcess, DataMigrate, DataBackup).

Each handler observes (dataset, predecessor, Job), calls ``reconcile_operation`` and
applies what it returns. Job events re-sync their operation at once; an operation
that changes phase re-syncs the operations that run after it; a dataset that binds
re-syncs its waiting operations.
"""

from __future__ import annotations

from typing import Any

import kopf

from fluid_core.models import GROUP, VERSION
from fluid_core.models import KINDS as MODELS
from fluid_core.models.operations import OperationKind
from fluid_core.operator.handlers import (
    API,
    apply_all,
    client,
    now_stamp,
    parse_live,
    post_events,
    resync,
    state_changed,
)
from fluid_core.operator.kube import KubeClient, Ref
from fluid_core.reconcilers.operation import JobObserved, OperationObserved, job_name, reconcile_operation
from vineyard_runtime.kube.manifests import MANAGED_BY

#: Each operation kind and its plural (the resource kopf watches).
KINDS = {kind.value: MODELS[kind.value].CRD.plural for kind in OperationKind}


def _job(kube: KubeClient, op: Any) -> JobObserved | None:
    kind = "CronJob" if str(getattr(op.spec, "policy", "Once")) == "Cron" else "Job"
    body = kube.get(Ref("batch/v1", kind, op.namespace, job_name(op)))
    if body is None:
        return None
    status = body.get("status") or {}
    if kind == "CronJob":
        done = status.get("lastSuccessfulTime")
        return JobObserved(active=len(status.get("active") or []), succeeded=1 if done else 0,
                           start_time=status.get("lastScheduleTime"), completion_time=done)
    pods = kube.list(Ref("v1", "Pod", op.namespace), {"job-name": job_name(op)})
    nodes = [p["spec"]["nodeName"] for p in pods if (p.get("spec") or {}).get("nodeName")]
    return JobObserved(active=int(status.get("active") or 0), succeeded=int(status.get("succeeded") or 0),
                       failed=int(status.get("failed") or 0), node=nodes[-1] if nodes else None,
                       start_time=status.get("startTime"), completion_time=status.get("completionTime"))


def observe_operation(kube: KubeClient, op: Any) -> OperationObserved:
    dataset = kube.get(Ref(API, "Dataset", op.spec.dataset.namespace or op.namespace, op.spec.dataset.name))
    bound = ((dataset or {}).get("status") or {}).get("phase") == "Bound"
    phase = node = None
    after = op.spec.run_after
    if after is not None:
        body = kube.get(Ref(API, after.kind, after.namespace or op.namespace, after.name))
        phase = ((body or {}).get("status") or {}).get("phase", "Pending") if body is not None else ""
        node = ((body or {}).get("status") or {}).get("node")
        depend_on = after.affinity_strategy.depend_on if after.affinity_strategy is not None else None
        if depend_on is not None:  # the node to follow is another operation's
            other = kube.get(Ref(API, depend_on.kind, depend_on.namespace or op.namespace, depend_on.name))
            node = ((other or {}).get("status") or {}).get("node")
    return OperationObserved(dataset_bound=bound, predecessor_phase=phase, predecessor_node=node,
                             job=_job(kube, op), cycle=_run_after_cycle(kube, op))


#: How far a runAfter chain is followed looking for a cycle.
MAX_CHAIN = 100


def _run_after_cycle(kube: KubeClient, op: Any) -> tuple[str, ...]:
    """The operations of a ``runAfter`` cycle through ``op`` (``Kind/name`` each, from
    ``op`` on), or () when its chain ends."""
    start = (op.kind, op.namespace, op.name)
    seen = [start]
    after = (op.spec.run_after.to_dict() if op.spec.run_after is not None else None)
    namespace = op.namespace
    while after is not None and len(seen) <= MAX_CHAIN:
        key = (after["kind"], after.get("namespace") or namespace, after["name"])
        if key == start:
            return tuple(f"{k}/{n}" for k, _, n in seen)
        if key in seen:
            return ()  # a cycle further up the chain: its own members report it
        seen.append(key)
        body = kube.get(Ref(API, key[0], key[1], key[2]))
        namespace = key[1]
        after = ((body or {}).get("spec") or {}).get("runAfter")
    return ()


def resync_operation(kube: KubeClient, kind: str, namespace: str, name: str, logger: Any) -> None:
    """Apply the operation's Job and patch what changed in its status."""

    def sync(body: dict[str, Any], op: Any, previous: dict[str, Any]) -> dict[str, Any]:
        outcome = reconcile_operation(op, observe_operation(kube, op), previous, now=now_stamp())
        apply_all(kube, outcome.desired, logger)
        post_events(body, outcome.events)
        return outcome.status

    resync(kube, kind, namespace, name, sync)


def _register(kind: str, plural: str) -> None:
    def reconcile(body: Any, patch: kopf.Patch, logger: Any, **_: Any) -> None:
        if parse_live(body, patch, logger) is not None:
            resync_operation(client(), kind, body["metadata"]["namespace"], body["metadata"]["name"], logger)

    def changed(body: Any, type: str | None, logger: Any, **_: Any) -> None:  # noqa: A002
        """An operation changed phase: re-sync the operations that run after it."""
        status = body.get("status") or {}
        if not state_changed(body, (status.get("phase"), status.get("node")), type == "DELETED"):
            return
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        kube = client()
        for other_kind in KINDS:
            for item in kube.list(Ref(API, other_kind, namespace)):
                after = (item.get("spec") or {}).get("runAfter") or {}
                if after.get("kind") == kind and after.get("name") == name:
                    resync_operation(kube, other_kind, namespace, item["metadata"]["name"], logger)

    reconcile.__name__ = reconcile.__qualname__ = f"reconcile_{plural}"
    changed.__name__ = changed.__qualname__ = f"{plural}_changed"
    for decorate in (kopf.on.resume(GROUP, VERSION, plural), kopf.on.create(GROUP, VERSION, plural),
                     kopf.on.update(GROUP, VERSION, plural, field="spec"),
                     kopf.timer(GROUP, VERSION, plural, interval=30, initial_delay=30)):
        decorate(reconcile)
    kopf.on.event(GROUP, VERSION, plural)(changed)


for _kind, _plural in KINDS.items():
    _register(_kind, _plural)


@kopf.on.event("batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
@kopf.on.event("batch", "v1", "cronjobs", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
def job_changed(body: Any, type: str | None, logger: Any, **_: Any) -> None:  # noqa: A002
    """A Job of an operation progressed: re-sync the operation now."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    state = (status.get("active"), status.get("succeeded"), status.get("failed"), status.get("lastSuccessfulTime"))
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") in KINDS), None)
    if owner is not None and state_changed(body, state, type == "DELETED"):
        resync_operation(client(), owner["kind"], meta["namespace"], owner["name"], logger)


@kopf.on.event(GROUP, VERSION, "datasets")
def dataset_changed(body: Any, type: str | None, logger: Any, **_: Any) -> None:  # noqa: A002
    """A dataset bound (or unbound): re-sync the operations on it."""
    status = body.get("status") or {}
    if not state_changed(body, (status.get("phase"),), type == "DELETED"):
        return
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    kube = client()
    for kind in KINDS:
        for item in kube.list(Ref(API, kind, namespace)):
            if ((item.get("spec") or {}).get("dataset") or {}).get("name") == name:
                resync_operation(kube, kind, namespace, item["metadata"]["name"], logger)
