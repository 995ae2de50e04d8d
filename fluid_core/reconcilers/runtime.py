"""The generic runtime reconciler: drives an engine from observed state to status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fluid_core.models.runtime import VineyardRuntimeStatus
from fluid_core.reconcilers.conditions import set_condition, typed
from fluid_core.reconcilers.engine import Engine
from fluid_core.reconcilers.observed import RuntimeObserved, Workload
from fluid_core.reconcilers.policy import Policy

NOT_READY, PARTIAL_READY, READY = "NotReady", "PartialReady", "Ready"


@dataclass
class RuntimeOutcome:
    """What to create or update, the status to patch, events, and node labels."""

    desired: list[dict[str, Any]] = field(default_factory=list)
    status: VineyardRuntimeStatus = field(default_factory=VineyardRuntimeStatus)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    label_nodes: dict[str, dict[str, str | None]] = field(default_factory=dict)
    #: a worker pod to delete now, so that it starts again with the current master
    restart_worker: str | None = None

    @property
    def ready(self) -> bool:
        return runtime_ready(self.status)


def runtime_ready(status: VineyardRuntimeStatus | Mapping[str, Any] | None) -> bool:
    """The one readiness rule of a runtime, read from its status: its master and its
    workers are ready (the dataset binds then, and operations run)."""
    typed = VineyardRuntimeStatus.read(status)
    return typed.master_phase == READY and typed.worker_phase == READY


def phase(workload: Workload | None) -> str:
    if workload is None or workload.ready <= 0:
        return NOT_READY if not (workload and workload.desired == 0) else READY
    return READY if workload.ready >= workload.desired else PARTIAL_READY


def reconcile_runtime(
    engine: Engine,
    observed: RuntimeObserved,
    previous_status: VineyardRuntimeStatus | Mapping[str, Any] | None,
    *,
    now: str,
    rules: Policy | None = None,
) -> RuntimeOutcome:
    """Desired objects and status for a runtime, from what was observed.

    The master comes first; workers are set up once the master is ready (and kept once
    they exist); the bridge and the dataset's volume follow the workers. A runtime that
    asks for images or node paths ``rules`` (the default Policy unless given) do not
    allow gets nothing created or changed.
    """
    out = RuntimeOutcome()
    previous = VineyardRuntimeStatus.read(previous_status)
    conditions = [c.to_dict() for c in previous.conditions]
    unset = {**_counts_status(engine, None, None, None), **previous.model_dump(exclude_defaults=True)}
    if not observed.dataset_exists:
        conditions = set_condition(conditions, "Ready", False, "DatasetNotFound",
                                   "no Dataset of the same namespace and name; create it first", now)
        out.status = VineyardRuntimeStatus(**{**unset, "conditions": typed(conditions), "master_phase": NOT_READY,
                                              "worker_phase": NOT_READY, "fuse_phase": NOT_READY})
        out.events.append(("Warning", "DatasetNotFound",
                           "waiting for a Dataset of the same name; nothing is created until it exists"))
        return out
    refused = (rules or Policy()).review_runtime(engine.images(), engine.host_paths(), engine.privileged())
    if refused:
        message = "refused by the operator's policy: " + "; ".join(refused)
        conditions = set_condition(conditions, "Ready", False, "PolicyViolation", message, now)
        out.status = VineyardRuntimeStatus(**{"master_phase": NOT_READY, "worker_phase": NOT_READY,
                                              "fuse_phase": NOT_READY, **unset, "conditions": typed(conditions)})
        if not any(c.reason == "PolicyViolation" for c in previous.conditions):
            out.events.append(("Warning", "PolicyViolation", message))
        return out

    out.desired += engine.setup_master()
    master = engine.master_ready(observed)
    master_phase = phase(master)
    conditions = set_condition(conditions, "MasterInitialized", True, "Created",
                               "the master is set up", now)
    conditions = set_condition(conditions, "MasterReady", master_phase == READY, master_phase,
                               _counts("master", master), now)

    workers_started = master_phase == READY or observed.workers is not None
    workers = engine.workers_ready(observed) if workers_started else None
    worker_phase = phase(workers) if workers_started else NOT_READY
    bridge = observed.bridge
    fuse_phase = NOT_READY
    if workers_started:
        out.desired += engine.setup_workers(observed) + engine.setup_bridge() + engine.bind()
        fuse_phase = phase(bridge) if bridge is not None else NOT_READY
    conditions = set_condition(conditions, "WorkersInitialized", workers_started,
                               "Created" if workers_started else "WaitingForMaster",
                               "the workers are set up" if workers_started else "waiting for the master", now)
    conditions = set_condition(conditions, "WorkersReady", worker_phase == READY, worker_phase,
                               _counts("worker", workers), now)
    conditions = set_condition(conditions, "FusesReady", fuse_phase == READY, fuse_phase,
                               _counts("bridge", bridge), now)
    ready = master_phase == READY and worker_phase == READY
    conditions = set_condition(conditions, "Ready", ready, "Ready" if ready else "NotReady",
                               "master and workers are ready" if ready else "waiting for master and workers", now)

    labels = engine.node_labels()
    for node in sorted(observed.worker_nodes):
        if node not in observed.labelled_nodes:
            out.label_nodes[node] = dict(labels)
    for node in sorted(observed.labelled_nodes - observed.worker_nodes):
        out.label_nodes[node] = {key: None for key in labels}

    out.status = VineyardRuntimeStatus(
        master_phase=master_phase, worker_phase=worker_phase, fuse_phase=fuse_phase,
        **_counts_status(engine, master, workers, bridge),
        conditions=typed(conditions), master_persistence=engine.master_persistence(),
    )
    _master_replaced(engine, observed, previous, out)
    if master_phase == READY and observed.stale_workers and observed.unready_workers == 0:
        out.restart_worker = observed.stale_workers[0]  # one at a time, as they first started
    return out


def _master_replaced(engine: Engine, observed: RuntimeObserved, previous: VineyardRuntimeStatus,
                     out: RuntimeOutcome) -> None:
    """A new etcd master pod (the old one was deleted, or its node went away) has a new
    address, which vineyardd never looks up again, and, on an emptyDir, none of the old
    one's data: the workers start again (one after another, each once the others are
    ready: ``observed.stale_workers``), so that they register with it; what they held is
    gone, as the event says."""
    if observed.master_pod is None:
        out.status.master_pod_uid = previous.master_pod_uid
        return
    out.status.master_pod_uid = observed.master_pod
    before = previous.master_pod_uid
    if before is None or before == observed.master_pod or observed.workers is None:
        return
    lost = ("its data, on an emptyDir, is lost (names, registrations), and so are the objects the workers held"
            if engine.master_persistence() != "PersistentVolumeClaim" else "its data is kept on its volume; the objects the workers held "
            "are lost")
    out.events.append(("Warning", "MasterReplaced", f"the etcd master's pod was replaced: {lost}; the workers "
                       "start again to register with it (put the objects again)"))


def _counts_status(engine: Engine, master: Workload | None, workers: Workload | None,
                   bridge: Workload | None) -> dict[str, Any]:
    """Fluid's replica counts of the three parts (all required by its status schema),
    the settings' ConfigMap and the workers' selector (read by ``kubectl scale``)."""
    status: dict[str, Any] = {}
    for part, workload in (("master", master), ("worker", workers), ("fuse", bridge)):
        status[f"{part}_number_ready"] = workload.ready if workload else 0
        status[f"desired_{part}_number_scheduled"] = workload.desired if workload else 0
        status[f"current_{part}_number_scheduled"] = workload.current if workload else 0
    status["value_file"] = engine.value_file()
    status["selector"] = engine.worker_selector()
    return status


def _counts(what: str, workload: Workload | None) -> str:
    if workload is None:
        return f"no {what} observed yet"
    return f"{workload.ready}/{workload.desired} {what} replicas ready"
