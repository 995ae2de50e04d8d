"""Run a flow of data operations on the local cluster.

Each operation starts on the node placement picks (its inputs' node, or its
predecessor's with ``runAfter.affinityStrategy``), in a process of its own; a failed
predecessor fails its successors without running them; ``Cron`` and ``OnEvent``
operations fire again until the run ends; ``ttlSecondsAfterFinished`` removes the
run's intermediate objects once nothing runs any more.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fluid_core.flow.context import OP_LABEL, RUN_LABEL
from fluid_core.models.object_names import object_name
from fluid_core.flow.ops import script_argv
from fluid_core.flow.spawner import Spawner
from fluid_core.flow.steps import ScriptStep, StepProcess
from fluid_core.flow.validate import FlowInvalid, check_flow, dataset_mounts, dataset_restores, key_of, operations_of, order
from fluid_core.models.base import not_applied_warnings
from fluid_core.placement import PlacementRequest, rank_nodes
from fluid_core.placement.flow import follow, with_node_selector
from fluid_core.placement.local import local_view
from fluid_core.placement.locations import named_ids
from fluid_core.reconcilers.lifecycle import (
    COMPLETE,
    EXECUTING,
    FAILED,
    PENDING,
    UNFINISHED,
    Decision,
    EventWatch,
    Observed,
    RunState,
    decide,
    gate,
)
from fluid_core.stamps import now_stamp
from vineyard_runtime.naming import safe_value

#: How often OnEvent operations read the dataset's object names from etcd.
EVENT_POLL_SECONDS = 0.2


@dataclass
class OperationRun:
    """One operation of a run: its phase, node, timing, I/O and log."""

    resource: Any
    phase: str = PENDING
    #: the latest run, as the shared lifecycle (``reconcilers.lifecycle``) reads it
    state: RunState = RunState.NOT_STARTED
    node: str | None = None
    message: str = ""
    started: float | None = None
    finished: float | None = None
    step_seconds: float | None = None
    stats: dict[str, int] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    log: str | None = None
    waiting_for: dict[str, bool] = field(default_factory=dict)
    node_affinity: dict[str, Any] | None = None
    last_schedule_time: str | None = None
    last_successful_time: str | None = None
    runs: int = 0
    removed: bool = False
    _process: StepProcess | None = None
    _next_fire: float | None = None
    _watch: EventWatch | None = None
    _polled: float = 0.0

    @property
    def kind(self) -> str:
        return str(self.resource.kind)

    @property
    def name(self) -> str:
        return str(self.resource.name)

    @property
    def policy(self) -> str:
        return str(getattr(self.resource.spec, "policy", "Once") or "Once")

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.monotonic()) - self.started

    def status(self) -> dict[str, Any]:
        """The operation's status as its custom resource would carry it."""
        conditions = []
        if self.phase in (COMPLETE, FAILED):
            conditions.append({"type": self.phase, "status": "True", "reason": self.phase,
                               "message": self.message, "lastTransitionTime": self.last_schedule_time or ""})
        duration = f"{self.seconds:.2f}s" if self.seconds is not None else UNFINISHED
        warnings = not_applied_warnings(self.resource.spec, "local")
        status = {"phase": self.phase, "duration": duration, "conditions": conditions,
                  "waitingFor": self.waiting_for, "nodeAffinity": self.node_affinity,
                  "node": self.node, "lastScheduleTime": self.last_schedule_time,
                  "lastSuccessfulTime": self.last_successful_time,
                  "infos": {"notApplied": "; ".join(warnings)} if warnings else None}
        return {k: v for k, v in status.items() if v not in (None, {}) and (k == "conditions" or v != [])}

    def summary(self) -> dict[str, Any]:
        """What ``fluidv run --json`` prints for the operation."""
        return {"kind": self.kind, "name": self.name, "phase": self.phase, "node": self.node,
                "duration_seconds": round(self.seconds, 4) if self.seconds is not None else None,
                "step_seconds": round(self.step_seconds, 4) if self.step_seconds is not None else None,
                "bytes_read": self.stats.get("bytes_read", 0), "bytes_written": self.stats.get("bytes_written", 0),
                "local_reads": self.stats.get("local_reads", 0), "remote_reads": self.stats.get("remote_reads", 0),
                "io_seconds": round(self.stats.get("io_seconds", 0.0), 4), "runs": self.runs, "message": self.message, "log": self.log}


class LocalRunner:
    """Runs the operations among ``resources`` (parsed CRs) on ``cluster``.

    ``LocalRunner(cluster, resources).run()`` returns the operations' final state;
    ``on_change`` is called (from the runner's thread) whenever one changes.
    """

    def __init__(self, cluster: Any, resources: list[Any], *, run_id: str | None = None,
                 workdir: str | None = None, on_change: Callable[[list[OperationRun]], None] | None = None,
                 poll_seconds: float = 0.02) -> None:
        self.cluster = cluster
        self.run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"
        self.datasets = {f"{r.namespace}/{r.name}" for r in resources if r.kind == "Dataset"}
        #: each dataset's ``spec.mounts``: the storage a DataLoad reads
        self.mounts = dataset_mounts(resources)
        #: datasets to restore before anything runs: ``ns/name`` -> ``dataRestoreLocation.path``
        self.restores = dataset_restores(resources)
        check_flow(resources)
        operations = operations_of(resources)
        #: what each restore did (``ns/name`` -> a one-line summary), once ``run`` began
        self.restored: dict[str, str] = {}
        self.operations = [OperationRun(op) for op in order(operations)]
        self._by_key = {key_of(run.resource): run for run in self.operations}
        if workdir is None:  # logs and results next to the cluster's own, one folder per run
            base = getattr(cluster, "workdir", None)
            workdir = (os.path.join(base, "runs", f"{self.run_id}-{uuid.uuid4().hex[:6]}") if base
                       else tempfile.mkdtemp(prefix=f"fluidv-{self.run_id}-"))
        self.workdir = workdir
        os.makedirs(self.workdir, exist_ok=True)
        #: Called (from the runner's thread) with the operations whenever one changes.
        self.on_change = on_change
        self._poll = poll_seconds
        self._stopping = False
        self._placed: dict[str, int] = {}
        self._spawner: Spawner | None = None
        #: Set once the run has started and every OnEvent operation watches its objects.
        self.watching = threading.Event()

    # -- the loop ---------------------------------------------------------------------

    def stop(self) -> None:
        """End the run after the operations now executing (Cron/OnEvent stop firing)."""
        self._stopping = True

    def run(self, *, until: float | None = None, timeout: float | None = None) -> list[OperationRun]:
        """Run until every ``Once`` operation has finished; repeating operations fire
        until ``until`` seconds have passed (or ``stop()``). ``timeout`` fails what still
        runs after that many seconds."""
        self._restore()
        self._changed()
        self._spawner = Spawner(os.path.join(self.workdir, "steps.log")).start()
        began = time.monotonic()  # the clock starts once steps can start
        reason = "the run was interrupted"
        try:
            while True:
                now = time.monotonic()
                if timeout is not None and now - began > timeout:
                    self._abort(f"timed out after {timeout:g}s")
                    break
                if until is not None and now - began > until:
                    self._stopping = True
                for run in self.operations:
                    self._advance(run, now)
                self.watching.set()
                if self._finished():
                    break
                self._spawner.wait(self._poll)  # woken at once when a step ends
        except BaseException as exc:  # Ctrl-C, a signal, a bug: every step stops, marked with why
            reason = f"the run was interrupted: {exc or type(exc).__name__}"
            raise
        finally:
            self._abort(reason)
            self._spawner.close()
        self._expire()
        return self.operations

    def _restore(self) -> None:
        """Bind the datasets that name a ``dataRestoreLocation``: restore each backup (into
        an empty dataset) on the node placement picks, before any operation runs."""
        if not self.restores:
            return
        import objects  # noqa: PLC0415
        from fluid_core.flow.context import StepContext  # noqa: PLC0415
        from fluid_core.flow.ops import OperationFailed, restore_dataset  # noqa: PLC0415

        view = local_view(self.cluster, self.datasets)
        sockets = {n.name: n.socket for n in self.cluster.nodes}
        for key, location in self.restores.items():
            namespace, name = key.split("/", 1)
            node = rank_nodes(PlacementRequest(namespace=namespace, datasets=(name,)), view)[0][0]
            with objects.connect(sockets[node]) as store:
                try:
                    self.restored[key] = restore_dataset(StepContext(store, namespace, name), location)
                except (OperationFailed, OSError) as exc:
                    raise FlowInvalid([(f"Dataset/{name}: spec.dataRestoreLocation", str(exc))]) from None

    def _finished(self) -> bool:
        busy = any(r.phase == EXECUTING for r in self.operations)
        waiting = any(r.phase == PENDING and not self._stopping for r in self.operations)
        repeating = any(r.policy != "Once" and r.phase != FAILED for r in self.operations)
        return not busy and not waiting and (self._stopping or not repeating)

    def _advance(self, run: OperationRun, now: float) -> None:
        """Observe the operation's run and do what the shared lifecycle decides."""
        if run.state is RunState.RUNNING:
            self._collect(run)
        elif self._stopping:
            return
        after = run.resource.spec.run_after
        predecessor = self._by_key.get((after.kind, after.name)) if after else None
        allowed = gate(None, None)
        if predecessor is not None:
            # a predecessor counts as Complete once it has run (Cron ones run again)
            ran = COMPLETE if predecessor.phase == COMPLETE and predecessor.runs > 0 else (
                FAILED if predecessor.phase == FAILED else PENDING)
            allowed = gate(after, ran)
        due = (run.state is not RunState.RUNNING and not self._stopping and (allowed.go or run.runs > 0)
               and self._due(run, now))
        decision = decide(run.policy, allowed, Observed(run.state, run.runs, due, run.message))
        if decision.launch:
            self._start(run, predecessor)
            decision = decide(run.policy, allowed, Observed(run.state, run.runs, False, run.message))
        self._apply(run, decision)

    def _apply(self, run: OperationRun, decision: Decision) -> None:
        changed = (run.phase, run.waiting_for) != (decision.phase, decision.waiting_for)
        if decision.phase in (COMPLETE, FAILED):
            changed = changed or run.message != decision.message
            run.message = decision.message
            if run.finished is None:  # failed before it ran
                run.finished = time.monotonic()
                run.started = run.finished if run.started is None else run.started
        run.phase, run.waiting_for = decision.phase, dict(decision.waiting_for)
        if changed:
            self._changed()

    def _due(self, run: OperationRun, now: float) -> bool:
        """Whether a repeating operation's trigger fired (never for ``Once``)."""
        if run.policy == "Cron":
            return self._cron(run, now)
        if run.policy == "OnEvent":
            return self._on_event(run, now)
        return False

    def _cron(self, run: OperationRun, now: float) -> bool:
        from croniter import croniter  # noqa: PLC0415

        if run._next_fire is None:
            base = dt.datetime.now()
            upcoming = croniter(run.resource.spec.schedule, base).get_next(dt.datetime)
            run._next_fire = now + (upcoming - base).total_seconds()
        if now >= run._next_fire:
            run._next_fire = None
            return True
        return False

    def _on_event(self, run: OperationRun, now: float) -> bool:
        if run._watch is None:
            spec = run.resource.spec
            namespace = run.resource.namespace if spec.dataset.namespace is None else spec.dataset.namespace
            run._watch = EventWatch(object_name(namespace, spec.dataset.name, spec.on_event.object_pattern),
                                    spec.on_event.debounce_seconds)
        if run._watch.changed_at is None and now - run._polled < EVENT_POLL_SECONDS:
            return False
        run._polled = now
        return run._watch.due(named_ids(self.cluster.etcd_endpoint, etcd_prefix=self.cluster.etcd_prefix), now)

    # -- one operation ----------------------------------------------------------------

    def _place(self, run: OperationRun, predecessor: OperationRun | None) -> list[str]:
        """The nodes the operation may run on, best first (it runs on the first)."""
        spec = run.resource.spec
        namespace = spec.dataset.namespace or run.resource.namespace
        after = spec.run_after
        view = local_view(self.cluster, self.datasets)
        affinity = None
        strategy = after.affinity_strategy if after is not None else None
        if strategy is not None and strategy.depend_on is not None:  # follow another operation than runAfter's
            predecessor = self._by_key.get((strategy.depend_on.kind, strategy.depend_on.name))
        if strategy is not None and predecessor and predecessor.node:
            affinity = follow(strategy, predecessor.node, view)
        affinity = with_node_selector(affinity, getattr(spec, "node_selector", None) or {})
        consumes = tuple(getattr(spec, "inputs", ()) or ())
        reads_all = run.kind == "DataBackup" or (run.kind == "DataMigrate" and spec.to.external_storage is not None)
        if reads_all:  # it reads every object of the dataset: go where most of the bytes are
            prefix = object_name(namespace, spec.dataset.name, "")
            consumes = tuple(key for key in view.objects if key.startswith(prefix))
        request = PlacementRequest(namespace=namespace, datasets=(spec.dataset.name,),
                                   consumes=consumes, affinity=affinity)
        ranked = rank_nodes(request, view)
        if not ranked:
            raise RuntimeError("no node meets the operation's affinity or nodeSelector "
                               "(node labels: see `fluidv cluster status`)")
        best = ranked[0][1]
        node = min((n for n, score in ranked if score == best), key=lambda n: (self._placed.get(n, 0), n))
        run.node_affinity = affinity
        self._placed[node] = self._placed.get(node, 0) + 1
        return [node] + [n for n, _ in ranked if n != node]

    def _start(self, run: OperationRun, predecessor: OperationRun | None) -> None:
        spec = run.resource.spec
        try:
            nodes = self._place(run, predecessor)
        except RuntimeError as exc:
            self._ended(run, RunState.FAILED, str(exc))
            return
        run.node = nodes[0]
        sockets = {n.name: n.socket for n in self.cluster.nodes}
        socket = sockets[run.node]
        run.runs += 1
        base = os.path.join(self.workdir, f"{run.kind.lower()}-{run.name}-{run.runs}")
        run.log = base + ".log"
        run.state, run.message, run.stats, run.written = RunState.RUNNING, "", {}, []
        run.started, run.finished, run.step_seconds = time.monotonic(), None, None
        run.last_schedule_time = now_stamp()
        namespace = spec.dataset.namespace or run.resource.namespace
        script = getattr(getattr(spec, "processor", None), "script", None)
        if script is not None:
            env = {**os.environ, **{e["name"]: str(e.get("value", "")) for e in script.env if "name" in e},
                   "VINEYARD_IPC_SOCKET": socket, "FLUID_DATASET": f"{namespace}/{spec.dataset.name}",
                   "FLUID_RUN_ID": self.run_id, "FLUID_NODE": run.node}
            source_file = base + ".script"
            with open(source_file, "w") as handle:
                handle.write(script.source)
            with open(run.log, "ab") as log:
                run._process = ScriptStep(subprocess.Popen(script_argv(script, source_file),
                                                           env=env, stdout=log, stderr=subprocess.STDOUT,
                                                           stdin=subprocess.DEVNULL, start_new_session=True))
        else:
            request = {"resource": run.resource.to_dict(), "socket": socket, "namespace": namespace,
                       "dataset": spec.dataset.name, "run_id": self.run_id, "operation": run.name,
                       "mounts": self.mounts.get(f"{namespace}/{spec.dataset.name}", []),
                       "replicas": [sockets[n] for n in nodes[1:spec.copies() if run.kind == "DataLoad" else 1]]}
            assert self._spawner is not None
            run._process = self._spawner.spawn(request, run.log)
        self._changed()

    def _collect(self, run: OperationRun) -> None:
        assert run._process is not None
        ended = run._process.poll()
        if ended is None:
            return
        ok, message, report = ended.ok, ended.message, ended.report
        run.stats, run.written = report.get("stats") or {}, report.get("written") or []
        run.step_seconds = report.get("seconds")
        if not ok:
            message = f"{message}; log {run.log}: {self._tail(run.log)}"
        self._ended(run, RunState.SUCCEEDED if ok else RunState.FAILED, str(message))

    @staticmethod
    def _tail(path: str | None, lines: int = 5) -> str:
        try:
            with open(path or "") as handle:
                return " | ".join(line.rstrip() for line in handle.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def _ended(self, run: OperationRun, state: RunState, message: str) -> None:
        """The operation's run ended (or could not start) as ``state``."""
        run.state, run.message, run._process = state, message, None
        run.finished = time.monotonic()
        if run.started is None:
            run.started = run.finished
        if state is RunState.SUCCEEDED:
            run.last_successful_time = now_stamp()
        if run._watch is not None:
            run._watch.rebase()  # what the operation itself wrote does not fire it again

    def _abort(self, reason: str) -> None:
        for run in self.operations:
            if run.state is RunState.RUNNING and run._process is not None:
                run._process.stop(timeout=5)
                self._ended(run, RunState.FAILED, reason)
                self._apply(run, decide(run.policy, gate(None, None), Observed(run.state, run.runs, False, run.message)))

    # -- clean-up -------------------------------------------------------------------------

    def outputs(self) -> set[str]:
        """Store names the flow declares as outputs (kept by TTL clean-up)."""
        kept: set[str] = set()
        for run in self.operations:
            spec = run.resource.spec
            namespace = spec.dataset.namespace or run.resource.namespace
            kept.update(object_name(namespace, spec.dataset.name, k) for k in getattr(spec, "outputs", ()) or ())
        return kept

    def _expire(self) -> None:
        """After each ``ttlSecondsAfterFinished``, drop the finished operation and the
        objects it wrote in this run, except declared outputs."""
        pending = [r for r in self.operations if r.resource.spec.ttl_seconds_after_finished is not None
                   and r.finished is not None]
        if not pending:
            return
        import objects  # noqa: PLC0415

        kept = self.outputs()
        with objects.connect(self.cluster.nodes[0].socket) as store:
            for run in sorted(pending, key=lambda r: r.finished + r.resource.spec.ttl_seconds_after_finished):
                delay = run.finished + run.resource.spec.ttl_seconds_after_finished - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                labels = {RUN_LABEL: safe_value(self.run_id), OP_LABEL: safe_value(run.name)}
                for ref in store.list(labels=labels):
                    if ref.name not in kept:
                        store.delete(ref)
                run.removed = True
                self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.operations)
