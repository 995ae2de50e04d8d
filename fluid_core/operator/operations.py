"""kopf handlers of the data operations (DataLoad, DataProcess, DataMigrate, DataBackup).

Each handler observes (dataset, predecessor, Job), calls ``reconcile_operation`` and
applies what it returns. Job events re-sync their operation at once; an operation
that changes phase re-syncs the operations that run after it; a dataset that binds
re-syncs its waiting operations; an OnEvent operation whose objects changed (seen in
its runtime's object directory, read by ``placement_feed``) re-syncs as due.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import kopf

from fluid_core.kube import KubeClient, Ref
from fluid_core.models import GROUP, VERSION
from fluid_core.models import KINDS as MODELS
from fluid_core.models.object_names import object_name
from fluid_core.models.operations import OperationKind
from fluid_core.operator import placement_feed, settings
from fluid_core.operator.cycle import (
    API,
    apply_all,
    client,
    job_counts,
    parse_live,
    post_events,
    resync,
    state_changed,
)
from fluid_core.operator.datasets import resync_dataset
from fluid_core.reconcilers.lifecycle import COMPLETE, EventWatch
from fluid_core.reconcilers.operation import (
    JobObserved,
    OperationObserved,
    job_name,
    reconcile_operation,
    run_count,
)
from fluid_core.stamps import now_stamp
from vineyard_runtime.kube.manifests import MANAGED_BY

#: Each operation kind and its plural (the resource kopf watches).
KINDS = {kind.value: MODELS[kind.value].CRD.plural for kind in OperationKind}


def _job(kube: KubeClient, op: Any, status: dict[str, Any]) -> JobObserved | None:
    """The operation's latest Job (an OnEvent operation's runs are Jobs of their own)."""
    policy = str(getattr(op.spec, "policy", "Once"))
    kind = "CronJob" if policy == "Cron" else "Job"
    name = job_name(op, run_count(status) if policy == "OnEvent" else 0)
    body = kube.get(Ref("batch/v1", kind, op.namespace, name))
    if body is None:
        return None
    status = body.get("status") or {}
    if kind == "CronJob":
        done = status.get("lastSuccessfulTime")
        return JobObserved(active=len(status.get("active") or []), succeeded=1 if done else 0,
                           start_time=status.get("lastScheduleTime"), completion_time=done)
    pods = kube.list(Ref("v1", "Pod", op.namespace), {"job-name": name})
    return dataclasses.replace(job_counts(body), node=job_node(pods), last_failure=_last_failure(pods))


def job_node(pods: list[dict[str, Any]]) -> str | None:
    """Where a Job ran: the node of its pod that succeeded, else of its newest pod (a
    retry may run elsewhere; the answer must not depend on the order pods are listed)."""
    placed = [p for p in pods if (p.get("spec") or {}).get("nodeName")]
    succeeded = [p for p in placed if (p.get("status") or {}).get("phase") == "Succeeded"]
    newest = max(succeeded or placed, default=None,
                 key=lambda p: (str(p["metadata"].get("creationTimestamp") or ""), p["metadata"].get("name", "")))
    return None if newest is None else str(newest["spec"]["nodeName"])


def _last_failure(pods: list[dict[str, Any]]) -> str:
    """The termination message (the log's tail, FallbackToLogsOnError) of the pod that
    failed last, trimmed to what a condition should carry."""
    failed = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = (container.get("state") or {}).get("terminated") or {}
            if ended.get("exitCode") and ended.get("message"):
                failed.append((str(ended.get("finishedAt") or ""), str(ended["message"])))
    return max(failed)[1].strip()[-1500:] if failed else ""


def observe_operation(kube: KubeClient, op: Any, status: dict[str, Any] | None = None, *,
                      due: bool = False) -> OperationObserved:
    dataset = kube.get(Ref(API, "Dataset", op.spec.dataset.namespace or op.namespace, op.spec.dataset.name))
    status_of_dataset = (dataset or {}).get("status") or {}
    ready: dict[str, Any] = next(
        (c for c in status_of_dataset.get("conditions") or [] if c.get("type") == "Ready"), {})
    # bound and ready: a bound dataset whose runtime is not ready makes operations wait
    bound = status_of_dataset.get("phase") == "Bound" and ready.get("status") != "False"
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
                             job=_job(kube, op, status or {}), cycle=_run_after_cycle(kube, op), due=due,
                             dataset_mounts=tuple(((dataset or {}).get("spec") or {}).get("mounts") or ()))


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


def resync_operation(kube: KubeClient, kind: str, namespace: str, name: str, logger: Any, *,
                     due: bool = False) -> None:
    """Apply the operation's Job and patch what changed in its status (``due``: an
    OnEvent operation's objects changed)."""

    def sync(body: dict[str, Any], op: Any, previous: dict[str, Any]) -> dict[str, Any]:
        observed = observe_operation(kube, op, previous, due=due)
        outcome = reconcile_operation(op, observed, previous, now=now_stamp(), rules=settings.policy())
        apply_all(kube, outcome.desired, logger)
        post_events(body, outcome.events)
        return outcome.status.to_dict()

    resync(kube, kind, namespace, name, sync)


class OnEventWatches:
    """The OnEvent operations the operator watches, with their triggers (one per live
    operation: added when it is reconciled, dropped when it is deleted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[tuple[str, str, str], tuple[str, EventWatch]] = {}

    def watch(self, op: Any) -> None:
        key = (op.kind, op.namespace, op.name)
        namespace = op.spec.dataset.namespace or op.namespace
        pattern = object_name(namespace, op.spec.dataset.name, op.spec.on_event.object_pattern)
        with self._lock:
            known = self._watches.get(key)
            if known is None or known[1].pattern != pattern:
                self._watches[key] = (f"{namespace}/{op.spec.dataset.name}",
                                      EventWatch(pattern, op.spec.on_event.debounce_seconds))

    def drop(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._watches.pop((kind, namespace, name), None)

    def of_dataset(self, dataset: str) -> list[tuple[tuple[str, str, str], EventWatch]]:
        with self._lock:
            return [(key, watch) for key, (on, watch) in self._watches.items() if on == dataset]


WATCHES = OnEventWatches()
_log = logging.getLogger(__name__)


def _idle(status: dict[str, Any]) -> bool:
    """Whether an operation waits for its trigger: it has run and succeeded, or its
    gate let it through and nothing has fired it yet."""
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return status.get("phase") == COMPLETE or ready.get("reason") == "WaitingForTrigger"


def fire_on_events(dataset: str, ids: dict[str, str]) -> None:
    """Re-sync, as due, each OnEvent operation of ``dataset`` whose objects changed."""
    kube, now = client(), time.monotonic()
    for (kind, namespace, name), watch in WATCHES.of_dataset(dataset):
        body = kube.get(Ref(API, kind, namespace, name))
        if body is None:
            WATCHES.drop(kind, namespace, name)
        elif not _idle(body.get("status") or {}):
            watch.rebase()  # running (or failed): what it writes itself does not fire it
        elif watch.due(ids, now):
            resync_operation(kube, kind, namespace, name, _log, due=True)


placement_feed.NAMES_LISTENERS.append(fire_on_events)


class Dependents:
    """Which operations name a dataset, and which run after an operation, as the
    operations' watch events tell: a change of either re-syncs those without listing
    every operation of the namespace (kopf replays every object when it starts)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: (namespace, kind, name) -> (dataset, predecessor's (namespace, kind, name))
        self._ops: dict[tuple[str, str, str], tuple[str | None, tuple[str, str, str] | None]] = {}

    def update(self, kind: str, body: dict[str, Any]) -> None:
        spec, namespace = body.get("spec") or {}, body["metadata"]["namespace"]
        dataset = spec.get("dataset")
        if isinstance(dataset, dict):  # DataBackup names it by a string (Fluid's shape)
            dataset = dataset.get("name")
        after = spec.get("runAfter") or {}
        predecessor = ((after.get("namespace") or namespace, after["kind"], after["name"])
                       if after.get("kind") and after.get("name") else None)
        with self._lock:
            self._ops[(namespace, kind, body["metadata"]["name"])] = (
                dataset if isinstance(dataset, str) else None, predecessor)

    def drop(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._ops.pop((namespace, kind, name), None)

    def on_dataset(self, namespace: str, dataset: str) -> list[tuple[str, str]]:
        with self._lock:
            return [(k, n) for (ns, k, n), (d, _) in self._ops.items() if ns == namespace and d == dataset]

    def after(self, namespace: str, kind: str, name: str) -> list[tuple[str, str, str]]:
        with self._lock:
            return [op for op, (_, p) in self._ops.items() if p == (namespace, kind, name)]


DEPENDENTS = Dependents()


def _register(kind: str, plural: str) -> None:
    def reconcile(body: Any, patch: kopf.Patch, logger: Any, **_: Any) -> None:
        op = parse_live(body, patch, logger)
        if op is None:
            return
        if str(getattr(op.spec, "policy", "Once")) == "OnEvent":
            WATCHES.watch(op)
        resync_operation(client(), kind, body["metadata"]["namespace"], body["metadata"]["name"], logger)

    def changed(body: Any, type: str | None, logger: Any, **_: Any) -> None:  # noqa: A002
        """An operation changed phase: re-sync the operations that run after it."""
        status = body.get("status") or {}
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        if type == "DELETED":
            WATCHES.drop(kind, namespace, name)
            DEPENDENTS.drop(kind, namespace, name)
        else:
            DEPENDENTS.update(kind, body)
        if not state_changed(body, (status.get("phase"), status.get("node")), type == "DELETED"):
            return
        kube = client()
        for other_namespace, other_kind, other in DEPENDENTS.after(namespace, kind, name):
            resync_operation(kube, other_kind, other_namespace, other, logger)

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
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") in (*KINDS, "Dataset")), None)
    if owner is None or not state_changed(body, state, type == "DELETED"):
        return
    if owner["kind"] == "Dataset":  # its restore Job
        resync_dataset(client(), meta["namespace"], owner["name"])
    else:
        resync_operation(client(), owner["kind"], meta["namespace"], owner["name"], logger)


@kopf.on.event(GROUP, VERSION, "datasets")
def dataset_changed(body: Any, type: str | None, logger: Any, **_: Any) -> None:  # noqa: A002
    """A dataset bound (or unbound): re-sync the operations on it."""
    status = body.get("status") or {}
    if not state_changed(body, (status.get("phase"),), type == "DELETED"):
        return
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    kube = client()
    for kind, operation in DEPENDENTS.on_dataset(namespace, name):
        resync_operation(kube, kind, namespace, operation, logger)
