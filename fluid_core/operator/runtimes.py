"""The VineyardRuntime handlers: observe its workloads and pods, reconcile, apply the
objects, label the nodes, restart a stale worker, patch the status; delete it all."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

import kopf

from fluid_core.errors import InvalidResource
from fluid_core.kube import KubeClient, KubeError, Ref
from fluid_core.models import GROUP, VERSION, Dataset, VineyardRuntime, parse
from fluid_core.operator import settings
from fluid_core.operator.cycle import (
    API,
    FULL_APPLY_SECONDS,
    RESYNC_SECONDS,
    apply_all,
    client,
    older_than,
    parse_live,
    post_events,
    resync,
    state_changed,
)
from fluid_core.reconcilers.engine import VineyardEngine
from fluid_core.reconcilers.observed import RuntimeObserved, Workload
from fluid_core.reconcilers.runtime import reconcile_runtime
from fluid_core.reconcilers.translate import kube_runtime, owner_reference
from fluid_core.stamps import now_stamp
from vineyard_runtime.kube.manifests import BLOB_TOKEN_KEY, MANAGED_BY, selector


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
        if previous.get("appliedDigest") == digest and workloads_present and not older_than(
                previous.get("appliedAt"), FULL_APPLY_SECONDS):
            outcome.status.applied_digest, outcome.status.applied_at = digest, previous.get("appliedAt")
        else:
            apply_all(kube, outcome.desired, logger)
            outcome.status.applied_digest, outcome.status.applied_at = digest, now_stamp()
        for node, labels in outcome.label_nodes.items():
            kube.patch(Ref("v1", "Node", None, node), {"metadata": {"labels": labels}})
        if outcome.restart_worker:  # its StatefulSet starts it again, with the new master's address
            kube.delete(Ref("v1", "Pod", namespace, outcome.restart_worker))
            logger.info("restarted worker %s: the etcd master was replaced", outcome.restart_worker)
        post_events(body, outcome.events)
        return outcome.status.to_dict()

    resync(kube, "VineyardRuntime", namespace, name, sync)


@kopf.on.resume(GROUP, VERSION, "vineyardruntimes")
@kopf.on.create(GROUP, VERSION, "vineyardruntimes")
@kopf.on.update(GROUP, VERSION, "vineyardruntimes", field="spec")
@kopf.timer(GROUP, VERSION, "vineyardruntimes", interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def reconcile_runtime_handler(body: Any, patch: kopf.Patch, logger: Any, **_: Any) -> None:
    """Bring the runtime's objects, node labels and status in line with its spec."""
    if isinstance(parse_live(body, patch, logger), VineyardRuntime):
        resync_runtime(client(), body["metadata"]["namespace"], body["metadata"]["name"], logger)


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
