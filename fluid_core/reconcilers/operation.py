"""The data-operation reconciler: one Job (or CronJob) per operation, in DataFlow order.

Plain function of (operation, what was observed, previous status) -> (desired objects,
status). A step waits ``Pending`` for its dataset to be bound and its ``runAfter``
predecessor to be ``Complete``; a failed predecessor fails it without a Job; with an
``affinityStrategy`` its pod follows the node its predecessor's pod ran on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fluid_core.errors import FluidError
from fluid_core.models.backup_location import VOLUME as BACKUP_VOLUME
from fluid_core.models.backup_location import BackupLocation
from fluid_core.models.base import not_applied_warnings
from fluid_core.models.operations import OperationStatus
from fluid_core.models.mounts import node_paths, source_of
from fluid_core.models.runtime import project_image_ref
from fluid_core.placement.flow import follow
from fluid_core.placement.mutate import CONFIG_FILE
from fluid_core.placement.view import ClusterView
from fluid_core.reconcilers.conditions import set_condition, typed
from fluid_core.reconcilers.policy import Policy
from fluid_core.reconcilers.lifecycle import (
    COMPLETE,
    FAILED,
    PENDING,
    UNFINISHED,
    Observed,
    RunState,
    decide,
    gate,
)
from fluid_core.stamps import seconds_between
from vineyard_runtime.naming import derived_name, safe_value
from vineyard_runtime.kube.manifests import MANAGED_BY

BACKOFF_LIMIT = 2
OPERATION_LABEL = "data.fluid.io/operation"


@dataclass(frozen=True)
class JobObserved:
    """A Job's counters and the node its pod ran on."""

    active: int = 0
    succeeded: int = 0
    failed: int = 0
    node: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    #: the end of the last failed pod's log (its containers' termination message)
    last_failure: str = ""


@dataclass(frozen=True)
class OperationObserved:
    dataset_bound: bool
    predecessor_phase: str | None = None  # None: no runAfter; "" : runAfter names a missing op
    predecessor_node: str | None = None
    job: JobObserved | None = None
    #: the operations of a runAfter cycle through this one (``Kind/name``), if any
    cycle: tuple[str, ...] = ()
    #: an OnEvent operation's objects changed (the operator's object watch says so)
    due: bool = False
    #: the dataset's ``spec.mounts`` (what a DataLoad loads from, a migrate's own mount)
    dataset_mounts: tuple[dict[str, Any], ...] = ()


#: What a Job running ``fluidv op run`` is given: the operation and its dataset's mounts,
#: so that its pod needs no access to the API server (its account may have none).
OPERATION_ENV, MOUNTS_ENV = "FLUIDV_OPERATION", "FLUIDV_DATASET_MOUNTS"


@dataclass
class OperationOutcome:
    desired: list[dict[str, Any]] = field(default_factory=list)
    status: OperationStatus = field(default_factory=OperationStatus)
    events: list[tuple[str, str, str]] = field(default_factory=list)


def job_name(op: Any, run: int = 0) -> str:
    """``<name>-<kind>``, at most 52 characters (a CronJob appends 11); ``-<run>`` added
    for the runs of an OnEvent operation, each a Job of its own. A long name keeps a hash
    of itself, so two operations never share a Job."""
    return derived_name(op.name, f"-{op.kind.lower()}" + (f"-{run}" if run else ""))


def dataset_volume(name: str, mount_path: str, sub_path: str | None = None,
                   ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Dataset ``name``'s volume, its mount, and the env that finds its store there."""
    mount = {"name": "dataset", "mountPath": mount_path}
    if sub_path:
        mount["subPath"] = sub_path
    else:  # the dataset's FUSE view reaches the pod whenever the node's bridge mounts it
        mount["mountPropagation"] = "HostToContainer"
    env = [{"name": "VINEYARD_CONFIG", "value": f"{mount_path}/{CONFIG_FILE}"}]
    return {"name": "dataset", "persistentVolumeClaim": {"claimName": name}}, mount, env


#: Where a script processor's ``source`` appears in its container, as in Fluid's chart.
SCRIPTS_DIR, SCRIPT_FILE = "/fluid-scripts", "preprocess.sh"


def script_config_map_name(op: Any) -> str:
    return f"{job_name(op)}-scripts"


def script_config_map(op: Any, owner: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The ConfigMap holding a script processor's ``source`` (None for other operations)."""
    processor = getattr(op.spec, "processor", None)
    script = getattr(processor, "script", None)
    if script is None or not script.source:
        return None
    metadata: dict[str, Any] = {"name": script_config_map_name(op), "namespace": op.namespace,
                                "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}}
    if owner:
        metadata["ownerReferences"] = owner
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {SCRIPT_FILE: script.source}}


def _script_container(op: Any, script: Any, env: list[dict[str, Any]], mount: dict[str, Any]) -> dict[str, Any]:
    """Fluid's script processor: ``command`` (or the image's entrypoint) run on the
    file holding ``source``."""
    container: dict[str, Any] = {
        "name": "script",
        "image": f"{script.image}:{script.image_tag or 'latest'}" if script.image else project_image_ref(),
        "env": env + list(script.env), "volumeMounts": [mount] + list(script.volume_mounts)}
    if script.command:
        container["command"] = list(script.command)
    if script.source:
        container["args"] = [f"{SCRIPTS_DIR}/{SCRIPT_FILE}"]
        container["volumeMounts"].append({"name": "fluid-scripts", "mountPath": SCRIPTS_DIR, "readOnly": True})
    if script.image_pull_policy:
        container["imagePullPolicy"] = script.image_pull_policy
    if script.resources:
        container["resources"] = dict(script.resources)
    return container


def _merge_node_affinity(user: dict[str, Any] | None, follow_node: dict[str, Any] | None) -> dict[str, Any] | None:
    """The user's ``affinity`` with the node affinity of a DataFlow step: the user's
    required terms stand; the step's preferences are added; its requirement is used
    when the user has none."""
    if not follow_node:
        return user
    affinity = dict(user or {})
    node = dict(affinity.get("nodeAffinity") or {})
    key = "requiredDuringSchedulingIgnoredDuringExecution"
    if follow_node.get(key) and not node.get(key):
        node[key] = follow_node[key]
    preferred = "preferredDuringSchedulingIgnoredDuringExecution"
    if follow_node.get(preferred):
        node[preferred] = list(node.get(preferred) or []) + list(follow_node[preferred])
    affinity["nodeAffinity"] = node
    return affinity


def pod_spec(op: Any, affinity: dict[str, Any] | None,
             mounts: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """The pod of the operation's Job: the dataset mounted, ``VINEYARD_CONFIG`` set, and
    Fluid's pod fields of the operation applied; ``mounts``: the dataset's."""
    spec = op.spec
    dataset = spec.dataset
    volume, mount, env = dataset_volume(dataset.name, getattr(dataset, "mount_path", None) or "/data",
                                        getattr(dataset, "sub_path", None))
    processor = getattr(spec, "processor", None)
    if processor is not None and processor.job is not None:
        pod = dict(processor.job.pod_spec)
        containers = []
        for given in pod.get("containers") or []:
            container = dict(given)
            container["volumeMounts"] = list(container.get("volumeMounts") or []) + [mount]
            container["env"] = list(container.get("env") or []) + env
            containers.append(container)
        pod["containers"] = containers
        pod["volumes"] = list(pod.get("volumes") or []) + [volume]
    elif processor is not None and processor.script is not None:
        script = processor.script
        pod = {"containers": [_script_container(op, script, env, mount)], "volumes": [volume] + list(script.volumes)}
        if script.source:
            pod["volumes"].append({"name": "fluid-scripts", "configMap": {"name": script_config_map_name(op)}})
        if script.restart_policy:
            pod["restartPolicy"] = script.restart_policy
    else:  # DataLoad, DataMigrate, DataBackup and function processors: the project image
        host = _host_volumes(op, mounts)
        given = {"apiVersion": op.api_version, "kind": op.kind,
                 "metadata": {"name": op.name, "namespace": op.namespace}, "spec": op.spec.to_dict()}
        container = {
            "name": op.kind.lower(), "image": project_image_ref(),
            "command": ["fluidv", "op", "run", op.kind, op.name, "--namespace", op.namespace],
            "env": env + [{"name": OPERATION_ENV, "value": json.dumps(given, sort_keys=True)},
                          {"name": MOUNTS_ENV, "value": json.dumps(list(mounts), sort_keys=True)}],
            "volumeMounts": [mount] + [m for _, m in host]}
        if getattr(spec, "image", None):
            container["image"] = f"{spec.image}:{spec.image_tag or 'latest'}"
        if getattr(spec, "image_pull_policy", None):
            container["imagePullPolicy"] = spec.image_pull_policy
        if getattr(spec, "resources", None):
            container["resources"] = dict(spec.resources)
        pod = {"containers": [container], "volumes": [volume] + [v for v, _ in host]}
        backup = BackupLocation(spec.backup_path).volume() if op.kind == "DataBackup" else None
        if backup is not None:  # Fluid's pvc:// or local:// backupPath
            pod["volumes"].append(backup[0])
            container["volumeMounts"].append(backup[1])
    pod.setdefault("restartPolicy", "Never")
    for container in pod.get("containers") or []:  # a failed run's status ends with its log's tail
        container.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
    if processor is not None and processor.service_account_name:
        pod["serviceAccountName"] = processor.service_account_name
    if getattr(spec, "node_selector", None):
        pod["nodeSelector"] = {**(pod.get("nodeSelector") or {}), **spec.node_selector}
    if getattr(spec, "tolerations", None):
        pod["tolerations"] = list(pod.get("tolerations") or []) + [t.to_dict() for t in spec.tolerations]
    if getattr(spec, "scheduler_name", None):
        pod["schedulerName"] = spec.scheduler_name
    if getattr(spec, "run_as", None) is not None:  # DataBackup: who writes the backup
        pod["securityContext"] = {**(pod.get("securityContext") or {}), "runAsUser": spec.run_as.uid,
                                  "runAsGroup": spec.run_as.gid}
    merged = _merge_node_affinity(getattr(spec, "affinity", None) or pod.get("affinity"), affinity)
    if merged:
        pod["affinity"] = merged
    return pod


#: The names of the node directories an operation's pod mounts (``local://`` storage).
HOST_VOLUME = "fluid-local-"


def _host_volumes(op: Any, mounts: tuple[dict[str, Any], ...]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Volumes (and their mounts, at the same paths) of the node directories the operation
    reads or writes: the dataset's ``local://`` mounts, read-only, and a DataMigrate's
    ``local://`` external storage (written when it is the ``to`` side)."""
    places = [(path, False) for path in node_paths(mounts)]
    if op.kind == "DataMigrate":
        for storage, writes in ((op.spec.from_.external_storage, False), (op.spec.to.external_storage, True)):
            if storage is not None and storage.uri.startswith("local://"):
                places.append((source_of(storage.uri), writes))
    merged: dict[str, bool] = {}  # a directory both read and written is mounted once, writable
    for path, writes in places:
        merged[path] = merged.get(path, False) or writes
    volumes = []
    for index, (path, writes) in enumerate(merged.items()):
        name = f"{HOST_VOLUME}{index}"
        volumes.append(({"name": name, "hostPath": {"path": path, "type": "DirectoryOrCreate" if writes else ""}},
                        {"name": name, "mountPath": path, "readOnly": not writes}))
    return volumes


def _pod_metadata(op: Any) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations Fluid's ``podMetadata`` puts on the operation's pods."""
    meta = getattr(op.spec, "pod_metadata", None) or getattr(getattr(op.spec, "processor", None), "pod_metadata", None)
    return (dict(meta.labels), dict(meta.annotations)) if meta is not None else ({}, {})


def owner_references(op: Any) -> list[dict[str, Any]] | None:
    """The operation as the controlling owner of what is made for it (None before it has a uid)."""
    if not op.metadata.uid:
        return None
    return [{"apiVersion": op.api_version, "kind": op.kind, "name": op.name, "uid": op.metadata.uid,
             "controller": True, "blockOwnerDeletion": True}]


class PolicyViolation(FluidError):
    """The operation asks for what the operator's policy does not allow (``problems``)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def job_manifest(op: Any, affinity: dict[str, Any] | None, run: int = 0, rules: Policy | None = None,
                 mounts: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """The Job (CronJob for ``policy: Cron``) running the operation (its ``run``-th
    run for an OnEvent operation), its pod held to ``rules`` (the default Policy unless
    given): PolicyViolation says what breaks them; ``mounts``: the dataset's."""
    labels = {"app.kubernetes.io/managed-by": MANAGED_BY, OPERATION_LABEL: safe_value(f"{op.kind}-{op.name}"),
              "fluid.io/dataset": safe_value(f"{op.namespace}-{op.spec.dataset.name}")}
    owner = owner_references(op)
    pod_labels, pod_annotations = _pod_metadata(op)
    template_meta: dict[str, Any] = {"labels": {**pod_labels, **labels}}
    if pod_annotations:
        template_meta["annotations"] = pod_annotations
    own = frozenset({BACKUP_VOLUME} if op.kind == "DataBackup" else set()) | frozenset(
        v["name"] for v, _ in _host_volumes(op, mounts))
    pod, problems = (rules or Policy()).review_pod(pod_spec(op, affinity, mounts), own_host_paths=own)
    if problems:
        raise PolicyViolation(problems)
    job_spec: dict[str, Any] = {"backoffLimit": BACKOFF_LIMIT, "template": {"metadata": template_meta, "spec": pod}}
    if op.spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = op.spec.ttl_seconds_after_finished
    copies = op.spec.copies() if op.kind == "DataLoad" else 1
    if copies > 1:  # one pod per copy, each on a node of its own; JOB_COMPLETION_INDEX says which
        job_spec.update({"completions": copies, "parallelism": copies, "completionMode": "Indexed"})
        pod = job_spec["template"]["spec"]
        anti = {"labelSelector": {"matchLabels": {OPERATION_LABEL: labels[OPERATION_LABEL]}},
                "topologyKey": "kubernetes.io/hostname"}
        affinity = dict(pod.get("affinity") or {})
        apart = dict(affinity.get("podAntiAffinity") or {})
        required = "requiredDuringSchedulingIgnoredDuringExecution"
        apart[required] = list(apart.get(required) or []) + [anti]
        pod["affinity"] = {**affinity, "podAntiAffinity": apart}
    metadata = {"name": job_name(op, run), "namespace": op.namespace, "labels": labels}
    if owner:
        metadata["ownerReferences"] = owner
    if str(getattr(op.spec, "policy", "Once")) == "Cron":
        return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata,
                "spec": {"schedule": op.spec.schedule, "concurrencyPolicy": "Forbid",
                         "jobTemplate": {"metadata": {"labels": labels}, "spec": job_spec}}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def operation_duration(op: Any, status: OperationStatus, phase: str, now: str) -> str:
    """Fluid's ``status.duration`` (required by its schema): ``Unfinished`` until the
    operation ends; then the time it ran, or since it was created when no Job ran."""
    if phase not in (COMPLETE, FAILED):
        return UNFINISHED
    kept = status.duration
    if kept and kept != UNFINISHED:
        return str(kept)
    return _age((op.metadata.model_extra or {}).get("creationTimestamp"), now)


def _age(created: str | None, now: str) -> str:
    """Seconds since ``created`` as Fluid writes a duration (``0s`` when unknown)."""
    return f"{seconds_between(created, now):.0f}s" if created else "0s"


def invalid_operation_status(op_body: dict[str, Any], message: str, now: str) -> OperationStatus:
    """The status of an operation whose spec is invalid: ``Failed`` with the reason, so
    that whoever waits for it (Fluid's SDK ``wait()``) stops at once."""
    previous = OperationStatus.read(op_body.get("status"))
    conditions = set_condition([c.to_dict() for c in previous.conditions], FAILED, True, "InvalidSpec", message, now)
    return OperationStatus(phase=FAILED, conditions=typed(conditions),
                           duration=_age((op_body.get("metadata") or {}).get("creationTimestamp"), now))


def reconcile_operation(op: Any, observed: OperationObserved,
                        previous_status: OperationStatus | Mapping[str, Any] | None,
                        *, now: str, rules: Policy | None = None) -> OperationOutcome:
    """Desired Job and status of one data operation; ``rules``: what the operator lets
    a CR ask for (the default Policy unless given)."""
    out = OperationOutcome()
    previous = OperationStatus.read(previous_status)
    conditions = [c.to_dict() for c in previous.conditions]
    status = previous.model_copy(deep=True)
    after = op.spec.run_after

    def finish(phase: str, reason: str, message: str) -> OperationOutcome:
        status.phase = phase  # type: ignore[assignment]  # the enum's value, as the model keeps it
        status.conditions = typed(set_condition(conditions, phase if phase in (COMPLETE, FAILED) else "Ready",
                                                phase in (COMPLETE, FAILED), reason, message, now))
        status.duration = operation_duration(op, status, phase, now)
        out.status = status
        return out

    warnings = not_applied_warnings(op.spec, "kubernetes")
    if warnings:
        status.infos = {**status.infos, "notApplied": "; ".join(warnings)}
        if not previous.phase:
            out.events.append(("Warning", "NotApplied", "; ".join(warnings)))
    policy = str(getattr(op.spec, "policy", "Once") or "Once")
    allowed = gate(after, observed.predecessor_phase, dataset=op.spec.dataset.name,
                   dataset_bound=observed.dataset_bound, cycle=observed.cycle)
    if allowed.reason == "RunAfterCycle":
        out.events.append(("Warning", "RunAfterCycle", " -> ".join(observed.cycle)))
    runs = run_count(previous)
    job = observed.job
    decision = decide(policy, allowed, job_run(op, job, previous, runs, due=observed.due))
    status.waiting_for = decision.waiting_for
    if job is None and not decision.launch:  # waiting, failed before it ran, or its Job was removed
        return finish(decision.phase, decision.reason, decision.message)
    strategy = after.affinity_strategy if after is not None else None
    required = strategy is not None and getattr(strategy.policy, "value", strategy.policy) == "Require"
    if job is None and decision.launch and required and not observed.predecessor_node:
        # the predecessor ended, but the node it ran on is not in its status yet: a Job
        # launched now would not be held to that node
        status.waiting_for = {"operationComplete": True}
        return finish(PENDING, "WaitingForPredecessorNode", "waiting for the node the predecessor ran on")
    affinity = None
    if after is not None and after.affinity_strategy is not None and observed.predecessor_node:
        affinity = follow(after.affinity_strategy, observed.predecessor_node, ClusterView())
    if affinity:
        status.node_affinity = affinity
    if decision.launch and policy == "OnEvent":
        runs += 1
        status.infos = {**status.infos, RUNS_INFO: str(runs)}
    if decision.launch or job is not None:
        try:
            manifest = job_manifest(op, affinity, run=runs if policy == "OnEvent" else 0, rules=rules,
                                    mounts=observed.dataset_mounts)
        except PolicyViolation as refused:  # nothing is created (or changed) for it
            if previous.phase != FAILED:
                out.events.append(("Warning", "PolicyViolation", str(refused)))
            status.waiting_for = {}
            return finish(FAILED, "PolicyViolation", f"refused by the operator's policy: {refused}")
        scripts = script_config_map(op, owner_references(op))
        if scripts is not None:
            out.desired.append(scripts)
        if decision.launch or manifest["kind"] == "CronJob":  # a made Job cannot change: never sent again
            out.desired.append(manifest)
    name = job_name(op, runs if policy == "OnEvent" else 0)
    if job is not None and job.node:
        status.node = job.node
    if job is not None and job.start_time:
        status.last_schedule_time = job.start_time
    if job is not None and job.succeeded > 0 and not decision.launch:
        status.last_successful_time = job.completion_time or now
        if job.start_time and job.completion_time:
            status.duration = f"{seconds_between(job.start_time, job.completion_time):.0f}s"
    if decision.reason == "RunFailed" and previous.phase != FAILED:
        out.events.append(("Warning", "JobFailed", decision.message))
    messages = {"Launched": f"Job {name} created", "Running": f"Job {name} runs",
                "RunSucceeded": f"Job {name} succeeded"}
    return finish(decision.phase, decision.reason, messages.get(decision.reason, decision.message))


#: Where an OnEvent operation's status counts its runs (each run is a Job of its own).
RUNS_INFO = "runs"


def run_count(status: OperationStatus | Mapping[str, Any] | None) -> int:
    """How many Jobs an OnEvent operation has made (0 for the other policies)."""
    try:
        return int(OperationStatus.read(status).infos.get(RUNS_INFO, 0))
    except ValueError:
        return 0


def job_run(op: Any, job: JobObserved | None, previous: OperationStatus, runs: int, *, due: bool) -> Observed:
    """The operation's latest run as the lifecycle reads it, from its Job (or CronJob).
    A Job removed after it ended (``ttlSecondsAfterFinished``) leaves its result in the
    status, so it is never run again; creating a Cron operation's CronJob is its launch."""
    policy = str(getattr(op.spec, "policy", "Once") or "Once")
    if job is None:
        if previous.last_schedule_time and previous.phase in (COMPLETE, FAILED):
            ended = RunState.SUCCEEDED if previous.phase == COMPLETE else RunState.FAILED
            return Observed(ended, max(runs, 1), due, _condition_message(previous))
        return Observed(RunState.NOT_STARTED, runs, due or policy == "Cron")
    runs = max(runs, 1)
    if job.active > 0:
        return Observed(RunState.RUNNING, runs, due)
    if job.succeeded > 0:
        return Observed(RunState.SUCCEEDED, runs, due)
    if job.failed > BACKOFF_LIMIT:
        tail = f": its last pod's log ends with:\n{job.last_failure}" if job.last_failure else "; see its pods' logs"
        return Observed(RunState.FAILED, runs, due,
                        f"Job {job_name(op, runs if policy == 'OnEvent' else 0)} failed {job.failed} times{tail}")
    if policy == "Cron":  # the CronJob waits for its schedule
        return Observed(RunState.NOT_STARTED, runs, False)
    return Observed(RunState.RUNNING, runs, due)


def _condition_message(status: OperationStatus) -> str:
    return next((c.message for c in status.conditions if c.type == status.phase), "")
