"""The lifecycle of a data operation, one for both executors.

The local runner (``flow/runner.py``) and the operator's reconciler
(``reconcilers/operation.py``) observe their runs (a process, a Job), describe them as a
``RunState`` and ask ``decide`` for the phase and whether to launch a run; they only
launch and observe. ``gate`` is the rule before the first run (dataset bound,
``runAfter`` predecessor complete, no cycle).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from fluid_core.models.operations import OperationPhase

PENDING, EXECUTING = OperationPhase.PENDING.value, OperationPhase.EXECUTING.value
COMPLETE, FAILED = OperationPhase.COMPLETE.value, OperationPhase.FAILED.value
#: Fluid's duration of an operation that has not finished.
UNFINISHED = "Unfinished"


@dataclass(frozen=True)
class Gate:
    """Whether an operation may run now: ``phase`` is ``""`` (go), ``Pending`` (wait) or
    ``Failed`` (never), with Fluid's ``waitingFor`` and a reason for the condition."""

    phase: str
    reason: str = ""
    message: str = ""
    waiting_for: dict[str, bool] = field(default_factory=dict)

    @property
    def go(self) -> bool:
        return self.phase == ""


def gate(after: Any, predecessor_phase: str | None, *, dataset: str = "", dataset_bound: bool = True,
         cycle: tuple[str, ...] = ()) -> Gate:
    """The rule for an operation with ``runAfter`` ``after`` (None: none) whose
    predecessor is in ``predecessor_phase`` (``""``: it does not exist; ``Complete``
    only once it has run): a cycle or a failed or missing predecessor fails it, an
    unbound dataset or an unfinished predecessor keeps it waiting."""
    if cycle:
        return Gate(FAILED, "RunAfterCycle", "runAfter makes a cycle: " + " -> ".join((*cycle, cycle[0]))
                    + "; nothing was run. Break the cycle and recreate them")
    if not dataset_bound:
        return Gate(PENDING, "DatasetNotBound", f"waiting for Dataset {dataset} to be Bound", {"datasetBound": True})
    if after is None:
        return Gate("")
    if predecessor_phase == "":
        return Gate(FAILED, "PredecessorNotFound",
                    f"runAfter names {after.kind} {after.name!r}, which does not exist; create it or fix runAfter")
    if predecessor_phase == FAILED:
        return Gate(FAILED, "PredecessorFailed", f"{after.kind}/{after.name} failed; nothing was run",
                    {"operationComplete": False})
    if predecessor_phase != COMPLETE:
        return Gate(PENDING, "WaitingForPredecessor", f"waiting for {after.kind}/{after.name} to complete",
                    {"operationComplete": True})
    return Gate("", waiting_for={"operationComplete": False})


class RunState(str, Enum):
    """What an executor observed of an operation's latest run."""

    NOT_STARTED = "NotStarted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class Observed:
    """An operation's latest run (``state``, with ``message`` when it failed), how many
    runs were started, and whether a repeating operation's trigger fired (``due``: its
    Cron schedule came, or objects matching its OnEvent pattern changed)."""

    state: RunState = RunState.NOT_STARTED
    runs: int = 0
    due: bool = False
    message: str = ""


@dataclass(frozen=True)
class Decision:
    """The operation's phase, the reason and message of its condition, Fluid's
    ``waitingFor``, and whether the executor starts a run now (``launch``)."""

    phase: str
    reason: str
    message: str
    launch: bool = False
    waiting_for: dict[str, bool] = field(default_factory=dict)


#: What a repeating operation waits for before its first run.
_TRIGGERS = {"Cron": "its schedule", "OnEvent": "a change of the objects its onEvent pattern matches"}


def decide(policy: str, allowed: Gate, observed: Observed) -> Decision:
    """The next step of an operation with ``policy`` (``Once``, ``Cron``, ``OnEvent``):
    until its first run the gate holds it; then its runs decide. A run in progress is
    ``Executing``; a failed run fails the operation for good; ``Once`` launches once
    and is ``Complete`` when that run succeeded; a repeating operation launches
    whenever it is ``due`` and is ``Complete`` between successful runs."""
    if observed.runs == 0 and observed.state is RunState.NOT_STARTED and not allowed.go:
        return Decision(allowed.phase, allowed.reason, allowed.message, waiting_for=allowed.waiting_for)
    waiting = allowed.waiting_for
    if observed.state is RunState.RUNNING:
        return Decision(EXECUTING, "Running", f"run {max(observed.runs, 1)} is running", waiting_for=waiting)
    if observed.state is RunState.FAILED:
        return Decision(FAILED, "RunFailed", observed.message or "its run failed", waiting_for=waiting)
    repeating = policy in _TRIGGERS
    if (not repeating and observed.state is RunState.NOT_STARTED) or (repeating and observed.due):
        return Decision(EXECUTING, "Launched", f"run {observed.runs + 1} starts", launch=True, waiting_for=waiting)
    if observed.state is RunState.SUCCEEDED:
        return Decision(COMPLETE, "RunSucceeded", observed.message or "done", waiting_for=waiting)
    return Decision(PENDING, "WaitingForTrigger", f"waiting for {_TRIGGERS.get(policy, 'its start')}",
                    waiting_for=waiting)


# -- OnEvent: what fires an operation -----------------------------------------------------

def matching_ids(ids: Mapping[str, str], pattern: str) -> dict[str, str]:
    """``{name: object id}`` of the names matching an OnEvent ``pattern`` (a glob over
    full object names)."""
    return {name: oid for name, oid in ids.items() if fnmatch.fnmatchcase(name, pattern)}


def changed_ids(baseline: Mapping[str, str], current: Mapping[str, str]) -> bool:
    """Whether an object was put or re-put under a matching name since ``baseline``
    (deletions do not fire an operation)."""
    return any(baseline.get(name) != oid for name, oid in current.items())



@dataclass
class EventWatch:
    """The OnEvent trigger of one operation: ``due`` once objects matching its pattern
    were put or re-put and ``debounce`` seconds passed without another change. The
    first observation is the baseline; ``rebase`` after a run so that what the
    operation wrote itself does not fire it again."""

    pattern: str
    debounce: float = 0.0
    baseline: dict[str, str] | None = None
    changed_at: float | None = None

    def due(self, ids: Mapping[str, str], now: float) -> bool:
        """Whether the operation runs now, given every named object's id (``ids``)."""
        current = matching_ids(ids, self.pattern)
        if self.baseline is None:
            self.baseline = current
            return False
        if changed_ids(self.baseline, current):
            self.baseline, self.changed_at = current, now
        if self.changed_at is not None and now - self.changed_at >= self.debounce:
            self.changed_at = None
            return True
        return False

    def rebase(self) -> None:
        self.baseline = None
