"""kopf handlers: observe, call a reconciler, apply what it returns, patch status.

Importing this module registers the handlers with kopf's default registry
(that is what a kopf handler module is for); ``fluidv operator`` imports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import kopf

from fluid_core.errors import InvalidResource
from fluid_core.metrics import reconciling
from fluid_core.models import GROUP, VERSION, Dataset, VineyardRuntime, parse
from fluid_core.models.operations import OperationKind
from fluid_core.operator import placement_feed, settings
from fluid_core.kube import KubeClient, KubeError, Ref
from fluid_core.reconcilers.dataset import (
    deletion_blockers,
    reconcile_dataset,
    restore_job_name,
)
from fluid_core.reconcilers.engine import VineyardEngine
from fluid_core.reconcilers.observed import DatasetObserved, RuntimeObserved, Workload
from fluid_core.reconcilers.operation import JobObserved, invalid_operation_status
from fluid_core.reconcilers.runtime import reconcile_runtime
from fluid_core.reconcilers.translate import kube_runtime, owner_reference
from fluid_core.stamps import now_stamp, seconds_between
from vineyard_runtime.errors import InvalidSpec
from vineyard_runtime.kube.manifests import BLOB_TOKEN_KEY, MANAGED_BY, selector
from vineyard_runtime.quantity import parse_quantity

#: Seconds between re-syncs of readiness from the workloads' status.
RESYNC_SECONDS = float(os.environ.get("FLUIDV_RESYNC_SECONDS", "10"))
#: Objects are re-sent at least this often even when nothing changed (repairs drift).
FULL_APPLY_SECONDS = float(os.environ.get("FLUIDV_FULL_APPLY_SECONDS", "60"))
#: Handlers running at once: each mostly waits on the API server, so more than the cores.
WORKERS = int(os.environ.get("FLUIDV_OPERATOR_WORKERS", "16"))
FINALIZER = "data.fluid.io/fluid-vineyard"
API = f"{GROUP}/{VERSION}"

_log = logging.getLogger(__name__)
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


def _older_than(stamp: str | None, seconds: float) -> bool:
    return not stamp or seconds_between(stamp, now_stamp()) > seconds


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf connects with the same configuration as the operator's own client. Not
    kopf's ``login_via_client``: that loads the configuration from the environment again,
    while ``use_client`` may have pointed the operator at another server."""
    cfg = client().api.configuration
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        token=bearer_token(cfg),
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def bearer_token(cfg: Any) -> str | None:
    """The token of a kubernetes client configuration, read again from its file when it
    has one: in a pod, the ServiceAccount token is rotated by the kubelet, and the
    client keeps it as ``"bearer <token>"`` (lower case) until its refresh hook runs."""
    if cfg.refresh_api_key_hook is not None:
        cfg.refresh_api_key_hook(cfg)
    keys = cfg.api_key or {}
    header = str(keys.get("authorization") or keys.get("BearerToken") or "").strip()
    return re.sub(r"(?i)^bearer\s+", "", header) or None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    # Warnings and errors become Kubernetes events (the reconcilers post their own
    # events too); an event per handler run would cost a request each.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = WORKERS


# -- VineyardRuntime ------------------------------------------------------------------

OPERATION_KINDS = frozenset(kind.value for kind in OperationKind)


def _invalid(body: Any, patch: kopf.Patch, error: InvalidResource, logger: Any) -> None:
    """Record a bad resource in its status and an event; create nothing, do not retry."""
    message = "; ".join(f"{path}: {msg}" for path, msg in error.problems)
    if body.get("kind") in OPERATION_KINDS:  # an operation ends Failed: waiters stop at once
        patch.status.update(invalid_operation_status(dict(body), message, now_stamp()))
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


def _workload(item: dict[str, Any] | None, desired_key: str, ready_key: str, current_key: str) -> Workload | None:
    """A workload's counts. Desired is what its spec asks (a StatefulSet's replicas; a
    DaemonSet's count is the controller's); a status the controller wrote before it saw
    the current spec (observedGeneration behind generation) says nothing is ready yet."""
    if item is None:
        return None
    status = item.get("status") or {}
    generation = (item.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    desired = (item.get("spec") or {}).get("replicas", status.get(desired_key))
    if generation is not None and (observed is None or observed < generation):
        return Workload(desired=max(int(desired or 0), 1), ready=0, current=int(status.get(current_key) or 0))
    return Workload(desired=int(desired or 0), ready=int(status.get(ready_key) or 0),
                    current=int(status.get(current_key) or 0))


def observe_runtime(kube: KubeClient, runtime: VineyardRuntime, engine: VineyardEngine,
                    dataset_exists: bool) -> RuntimeObserved:
    rt = engine.rt
    ns = runtime.namespace
    master = None if rt.external_etcd else _workload(
        kube.get(Ref("apps/v1", "StatefulSet", ns, rt.master_name)), "replicas", "readyReplicas", "currentReplicas")
    workers = _workload(kube.get(Ref("apps/v1", "StatefulSet", ns, rt.worker_name)), "replicas", "readyReplicas",
                        "currentReplicas")
    bridge = _workload(kube.get(Ref("apps/v1", "DaemonSet", ns, rt.bridge_name)),
                       "desiredNumberScheduled", "numberReady", "currentNumberScheduled")
    pods = kube.list(Ref("v1", "Pod", ns), selector(rt, "worker"))
    worker_nodes = frozenset(
        p["spec"]["nodeName"] for p in pods
        if (p.get("spec") or {}).get("nodeName") and not p["metadata"].get("deletionTimestamp")
    )
    label_key = next(iter(engine.node_labels()))
    labelled = frozenset(n["metadata"]["name"] for n in kube.list(Ref("v1", "Node", None), {label_key: None}))
    masters = [] if rt.external_etcd else kube.list(Ref("v1", "Pod", ns), selector(rt, "master"))
    first = next((p for p in masters if p["metadata"]["name"] == f"{rt.master_name}-0"
                  and not p["metadata"].get("deletionTimestamp")), None)
    return RuntimeObserved(dataset_exists=dataset_exists, master=master, workers=workers, bridge=bridge,
                           worker_nodes=worker_nodes, labelled_nodes=labelled,
                           master_pod=first["metadata"]["uid"] if first else None,
                           stale_workers=stale_workers(pods, first), unready_workers=sum(
                               1 for p in pods if p["metadata"].get("deletionTimestamp") or not pod_ready(p)))


def pod_ready(pod: dict[str, Any]) -> bool:
    """The pod's Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def stale_workers(workers: list[dict[str, Any]], master: dict[str, Any] | None) -> tuple[str, ...]:
    """Worker pods whose vineyardd (its container's last start) began before the master's
    pod did: they registered with a master that is gone. (The master's container
    restarting in its pod keeps its data: that makes no worker stale.) By ordinal."""
    began = ((master or {}).get("status") or {}).get("startTime")
    if not began:
        return ()
    stale = []
    for pod in workers:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        started = [str(((c.get("state") or {}).get("running") or {}).get("startedAt") or "") for c in statuses]
        if not pod["metadata"].get("deletionTimestamp") and started and all(started) and max(started) < str(began):
            stale.append(pod["metadata"]["name"])
    return tuple(sorted(stale, key=lambda name: (len(name), name)))


def _dataset_of(kube: KubeClient, namespace: str, name: str) -> tuple[bool, Dataset | None]:
    body = kube.get(Ref(API, "Dataset", namespace, name))
    if body is None:
        return False, None
    try:
        return True, parse(body)  # type: ignore[return-value]
    except InvalidResource:
        return True, None


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


def ensure_blob_token(kube: KubeClient, rt: Any, owner: dict[str, Any] | None) -> None:
    """The runtime's blob token Secret, made once with a fresh random token (kept as it
    is afterwards: every bridge reads it, and its readers present it)."""
    ref = Ref("v1", "Secret", rt.namespace, rt.blob_token_name)
    if kube.get(ref) is not None:
        return
    metadata: dict[str, Any] = {"name": rt.blob_token_name, "namespace": rt.namespace,
                                "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}}
    if owner:
        metadata["ownerReferences"] = [owner]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque",
              "stringData": {BLOB_TOKEN_KEY: secrets.token_urlsafe(32)}}
    try:
        kube.request("POST", Ref("v1", "Secret", rt.namespace).path(), secret)
    except KubeError as error:
        if error.status != 409:  # made meanwhile by another round: that one stands
            raise


def resync_runtime(kube: KubeClient, namespace: str, name: str, logger: Any) -> None:
    """Apply the runtime's objects and node labels, post its events, patch what changed in its status."""

    def sync(body: dict[str, Any], runtime: Any, previous: dict[str, Any]) -> dict[str, Any]:
        exists, dataset = _dataset_of(kube, namespace, name)
        engine = VineyardEngine(kube_runtime(runtime, dataset))
        if exists:
            ensure_blob_token(kube, engine.rt, owner_reference(runtime))
        observed = observe_runtime(kube, runtime, engine, exists)
        outcome = reconcile_runtime(engine, observed, dict(previous), now=now_stamp(), rules=settings.policy())
        digest = hashlib.sha256(json.dumps(outcome.desired, sort_keys=True).encode()).hexdigest()[:16]
        workloads_present = observed.workers is not None or not any(
            m["kind"] == "StatefulSet" and m["metadata"]["name"].endswith("-worker") for m in outcome.desired)
        if previous.get("appliedDigest") == digest and workloads_present and not _older_than(
                previous.get("appliedAt"), FULL_APPLY_SECONDS):
            outcome.status["appliedDigest"], outcome.status["appliedAt"] = digest, previous.get("appliedAt")
        else:
            apply_all(kube, outcome.desired, logger)
            outcome.status["appliedDigest"], outcome.status["appliedAt"] = digest, now_stamp()
        for node, labels in outcome.label_nodes.items():
            kube.patch(Ref("v1", "Node", None, node), {"metadata": {"labels": labels}})
        if outcome.restart_worker:  # its StatefulSet starts it again, with the new master's address
            kube.delete(Ref("v1", "Pod", namespace, outcome.restart_worker))
            logger.info("restarted worker %s: the etcd master was replaced", outcome.restart_worker)
        post_events(body, outcome.events)
        return outcome.status

    resync(kube, "VineyardRuntime", namespace, name, sync)


@kopf.on.resume(GROUP, VERSION, "vineyardruntimes")
@kopf.on.create(GROUP, VERSION, "vineyardruntimes")
@kopf.on.update(GROUP, VERSION, "vineyardruntimes", field="spec")
@kopf.timer(GROUP, VERSION, "vineyardruntimes", interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def reconcile_runtime_handler(body: Any, patch: kopf.Patch, logger: Any, **_: Any) -> None:
    """Bring the runtime's objects, node labels and status in line with its spec."""
    if isinstance(parse_live(body, patch, logger), VineyardRuntime):
        resync_runtime(client(), body["metadata"]["namespace"], body["metadata"]["name"], logger)


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


@kopf.on.event("apps", "v1", "statefulsets", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
@kopf.on.event("apps", "v1", "daemonsets", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
def workload_changed(body: Any, type: str | None, logger: Any, **_: Any) -> None:  # noqa: A002
    """A master, worker or bridge changed readiness: re-sync its runtime now, not at the next timer."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    state = (status.get("readyReplicas"), status.get("numberReady"))
    owner = next((o["name"] for o in meta.get("ownerReferences") or [] if o.get("kind") == "VineyardRuntime"), None)
    namespace = meta.get("namespace")
    if owner is not None and namespace and state_changed(body, state, type == "DELETED"):
        resync_runtime(client(), namespace, owner, logger)


@kopf.on.delete(GROUP, VERSION, "vineyardruntimes")
def delete_runtime_handler(body: Any, logger: Any, **_: Any) -> None:
    """Delete every object of the runtime and the node labels it set."""
    kube = client()
    try:
        runtime = parse(dict(body))
    except InvalidResource:
        return  # nothing was ever created for an invalid runtime
    assert isinstance(runtime, VineyardRuntime)
    engine = VineyardEngine(kube_runtime(runtime))
    for manifest in engine.teardown():
        ref = Ref(manifest["apiVersion"], manifest["kind"], manifest["metadata"].get("namespace"),
                  manifest["metadata"]["name"])
        if kube.delete(ref):
            logger.info("deleted %s/%s", ref.kind, ref.name)
    keys = engine.node_labels()
    for node in kube.list(Ref("v1", "Node", None), {next(iter(keys)): None}):
        kube.patch(Ref("v1", "Node", None, node["metadata"]["name"]),
                   {"metadata": {"labels": {k: None for k in keys}}})


# -- Dataset --------------------------------------------------------------------------

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
    ready = status.get("masterPhase") == "Ready" and status.get("workerPhase") == "Ready"
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


def job_counts(body: dict[str, Any]) -> JobObserved:
    """A Job's counters and times, as its status says."""
    status = body.get("status") or {}
    return JobObserved(active=int(status.get("active") or 0), succeeded=int(status.get("succeeded") or 0),
                       failed=int(status.get("failed") or 0), start_time=status.get("startTime"),
                       completion_time=status.get("completionTime"))


def resync_dataset(kube: KubeClient, namespace: str, name: str) -> None:
    """Apply the dataset's restore Job, if it needs one, and patch what changed in its status."""

    def sync(body: dict[str, Any], dataset: Any, previous: dict[str, Any]) -> dict[str, Any]:
        observed = observe_dataset(kube, namespace, name)
        owner = [{"apiVersion": API, "kind": "Dataset", "name": name, "uid": body["metadata"].get("uid"),
                  "controller": True, "blockOwnerDeletion": True}] if body["metadata"].get("uid") else None
        outcome = reconcile_dataset(name, namespace, observed, dict(previous), now=now_stamp(),
                                    restore=dataset.spec.data_restore_location, owner=owner)
        apply_all(kube, outcome.desired, _log)
        return outcome.status

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
    ready = status.get("masterPhase") == "Ready" and status.get("workerPhase") == "Ready"
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


__all__ = ["KubeError", "client", "use_client"]
