"""What every reconcile of the operator shares: its API client, its settings, parsing a
live resource, the read-observe-patch cycle under a per-resource lock, applying
manifests, posting events, and telling a watch event worth a re-sync from a replay."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import kopf

from fluid_core.errors import InvalidResource
from fluid_core.kube import KubeClient, KubeError, Ref
from fluid_core.metrics import reconciling
from fluid_core.models import GROUP, VERSION, parse
from fluid_core.models.operations import OperationKind
from fluid_core.reconcilers.operation import JobObserved, invalid_operation_status
from fluid_core.stamps import now_stamp, seconds_between

#: Seconds between re-syncs of readiness from the workloads' status.
RESYNC_SECONDS = float(os.environ.get("FLUIDV_RESYNC_SECONDS", "10"))


#: Objects are re-sent at least this often even when nothing changed (repairs drift).
FULL_APPLY_SECONDS = float(os.environ.get("FLUIDV_FULL_APPLY_SECONDS", "60"))


#: Handlers running at once: each mostly waits on the API server, so more than the cores.
WORKERS = int(os.environ.get("FLUIDV_OPERATOR_WORKERS", "16"))


FINALIZER = "data.fluid.io/fluid-vineyard"


API = f"{GROUP}/{VERSION}"


_client: KubeClient | None = None


_client_lock = threading.Lock()


def client() -> KubeClient:
    """The operator's API client, made from the environment on first use."""
    global _client
    with _client_lock:
        if _client is None:
            _client = KubeClient.from_environment()
        return _client


def use_client(kube: KubeClient | None) -> None:
    """Replace the API client (tests point it at an emulator)."""
    global _client
    with _client_lock:
        _client = kube


def status_changes(previous: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """The status fields that differ from ``previous``: a patch sends only those."""
    return {k: v for k, v in status.items() if previous.get(k) != v}


def older_than(stamp: str | None, seconds: float) -> bool:
    return not stamp or seconds_between(stamp, now_stamp()) > seconds


OPERATION_KINDS = frozenset(kind.value for kind in OperationKind)


def _invalid(body: Any, patch: kopf.Patch, error: InvalidResource, logger: Any) -> None:
    """Record a bad resource in its status and an event; create nothing, do not retry."""
    message = "; ".join(f"{path}: {msg}" for path, msg in error.problems)
    if body.get("kind") in OPERATION_KINDS:  # an operation ends Failed: waiters stop at once
        patch.status.update(invalid_operation_status(dict(body), message, now_stamp()).to_dict())
    else:
        conditions = [c for c in (body.get("status") or {}).get("conditions", []) if c.get("type") != "Ready"]
        conditions.append({"type": "Ready", "status": "False", "reason": "InvalidSpec",
                           "message": message, "lastTransitionTime": now_stamp()})
        patch.status["conditions"] = conditions
    kopf.warn(body, reason="InvalidSpec", message=message)
    logger.warning("invalid %s: %s", body.get("kind"), message)


def parse_live(body: Any, patch: kopf.Patch, logger: Any) -> Any:
    """The typed resource, or None when it is being deleted or invalid (then reported)."""
    if body.get("metadata", {}).get("deletionTimestamp"):
        return None
    try:
        return parse(dict(body))
    except InvalidResource as error:
        _invalid(body, patch, error, logger)
        return None


class _KeyedLocks:
    """One lock per key while someone holds or awaits it, forgotten after the last one
    (the operator sees every resource ever made: a lock each, kept, would only grow)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str, str], tuple[threading.Lock, list[int]]] = {}

    @contextlib.contextmanager
    def hold(self, key: tuple[str, str, str]) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if users[0] == 0:
                    del self._locks[key]


_resource_locks = _KeyedLocks()


def lock_of(kind: str, namespace: str, name: str) -> contextlib.AbstractContextManager[None]:
    """One lock per resource: kopf's handlers and the event paths never interleave a
    read-observe-patch cycle, so a stale observation never overwrites a fresher one."""
    return _resource_locks.hold((kind, namespace, name))


def live_resource(kube: KubeClient, ref: Ref) -> tuple[dict[str, Any], Any] | None:
    """The current body and typed resource; None when gone, being deleted or invalid
    (an invalid one is reported by its own handler)."""
    body = kube.get(ref)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    try:
        return body, parse(body)
    except InvalidResource:
        return None


def resync(kube: KubeClient, kind: str, namespace: str, name: str,
           sync: Callable[[dict[str, Any], Any, dict[str, Any]], dict[str, Any]]) -> None:
    """The cycle every reconcile shares: under the resource's lock, read it live, let
    ``sync(body, resource, previous status)`` act and return the new status, patch what
    changed — only if the resource did not change meanwhile (its resourceVersion): a
    status written over a deletion that began meanwhile would make kopf's removal of
    the finalizer conflict and wait a minute. A skipped patch is redone on the next event."""
    ref = Ref(API, kind, namespace, name)
    with lock_of(kind, namespace, name), reconciling(kind):
        live = live_resource(kube, ref)
        if live is None:
            return
        body, resource = live
        previous = body.get("status") or {}
        changes = status_changes(previous, sync(body, resource, previous))
        if changes:
            try:
                kube.patch_status(ref, changes, resource_version=body["metadata"].get("resourceVersion"))
            except KubeError as error:
                if error.status != 409:
                    raise


def apply_all(kube: KubeClient, manifests: list[dict[str, Any]], logger: Any) -> None:
    """Create or update ``manifests``, logging what changed."""
    for manifest in manifests:
        result = kube.apply(manifest)
        if result != "unchanged":
            logger.info("%s %s/%s", result, manifest["kind"], manifest["metadata"]["name"])


def post_events(body: Any, events: list[tuple[str, str, str]]) -> None:
    for kind, reason, message in events:
        kopf.event(body, type=kind, reason=reason, message=message)


#: The last readiness seen per object uid, so that replayed watch events cost nothing.
_seen: dict[str, Any] = {}


_seen_lock = threading.Lock()


def state_changed(body: Any, state: tuple[Any, ...], gone: bool) -> bool:
    """Whether this event is worth a re-sync: the object is gone, or its ``state``
    differs from the last one seen. On first sight only a non-empty state counts: the
    handler that created the object has already synced what an empty one implies."""
    meta = body.get("metadata") or {}
    uid = meta.get("uid") or f"{body.get('kind')}/{meta.get('namespace')}/{meta.get('name')}"
    with _seen_lock:
        if gone:
            _seen.pop(uid, None)
            return True
        if uid not in _seen:
            _seen[uid] = state
            return any(state)
        if _seen[uid] == state:
            return False
        _seen[uid] = state
        return True


def job_counts(body: dict[str, Any]) -> JobObserved:
    """A Job's counters and times, as its status says."""
    status = body.get("status") or {}
    return JobObserved(active=int(status.get("active") or 0), succeeded=int(status.get("succeeded") or 0),
                       failed=int(status.get("failed") or 0), start_time=status.get("startTime"),
                       completion_time=status.get("completionTime"))
