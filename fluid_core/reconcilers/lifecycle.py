"""The phases of a data operation and the one rule both executors follow before they
run one: the local runner (``flow/runner.py``) and the operator's reconciler
(``reconcilers/operation.py``) ask ``gate`` and only launch and observe."""

from __future__ import annotations

from dataclasses import dataclass, field
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
