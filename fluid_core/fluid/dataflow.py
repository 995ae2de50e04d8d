"""``FluidDataFlow`` and ``FlowHandle``: Fluid's SDK flows, run by the local runner or
by the operator. Steps are named ``<run id>-step<n>`` and follow each other by
``runAfter``, as in Fluid's SDK."""

from __future__ import annotations

import time
from typing import Any

from fluid_core.fluid import constants
from fluid_core.fluid.models import wire
from fluid_core.sdk import Flow, SdkError


class FluidDataFlow:
    """Operations on one dataset, run in the order they were added."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset  # a FluidDataset
        self.flow_ops: list[dict[str, Any]] = []

    def _add(self, kind: str, spec: dict[str, Any]) -> "FluidDataFlow":
        self.flow_ops.append({"kind": kind, "spec": spec})
        return self

    def _ref(self) -> dict[str, str]:
        return {"name": self.dataset.name, "namespace": self.dataset.namespace}

    def preload(self, target_path: Any = "/", load_metadata: bool = False) -> "FluidDataFlow":
        """Warm dataset paths: a path, a list of them, or ``{path: replicas}``."""
        if isinstance(target_path, dict):
            targets = [{"path": p, "replicas": int(r)} for p, r in target_path.items()]
        elif isinstance(target_path, (list, tuple)):
            targets = [{"path": p, "replicas": 1} for p in target_path]
        else:
            targets = [{"path": str(target_path), "replicas": 1}]
        return self._add(constants.DATA_LOAD_KIND, {"dataset": self._ref(), "loadMetadata": load_metadata,
                                                    "target": targets})

    def migrate(self, path: str, migrate_direction: str, external_storage: Any) -> "FluidDataFlow":
        """Copy between ``external_storage`` and the dataset path ``path``: ``from``
        external storage into the dataset, or ``to`` it."""
        side = {"dataset": {**self._ref(), "path": path}}
        storage = {"externalStorage": wire(external_storage)}
        if migrate_direction == constants.DATA_MIGRATE_DIRECTION_FROM:
            spec = {"from": storage, "to": side}
        elif migrate_direction == constants.DATA_MIGRATE_DIRECTION_TO:
            spec = {"from": side, "to": storage}
        else:
            raise SdkError(f"migrate_direction is {constants.DATA_MIGRATE_DIRECTION_FROM!r} or "
                           f"{constants.DATA_MIGRATE_DIRECTION_TO!r}, not {migrate_direction!r}")
        return self._add(constants.DATA_MIGRATE_KIND, spec)

    def process(self, dataset_mountpath: str, processor: Any, sub_path: str | None = None) -> "FluidDataFlow":
        """Run ``processor`` (a script or job processor) with the dataset at ``dataset_mountpath``."""
        dataset = {**self._ref(), "mountPath": dataset_mountpath, **({"subPath": sub_path} if sub_path else {})}
        return self._add(constants.DATA_PROCESS_KIND, {"dataset": dataset, "processor": wire(processor)})

    def run(self, run_id: str, ttl_seconds_after_finished: int = constants.DEFAULT_DATAFLOW_TIME_TO_LIVE) -> "FlowHandle":
        """Submit the flow; its handle. The dataset must have a runtime (``bind_runtime``)."""
        dataset = self.dataset.obj
        if dataset.backend is None:
            raise RuntimeError(f"dataset {self.dataset.name} is not bound: call bind_runtime() first")
        steps: list[dict[str, Any]] = []
        for index, op in enumerate(self.flow_ops, start=1):
            spec = {**op["spec"], "ttlSecondsAfterFinished": ttl_seconds_after_finished}
            if steps:
                spec["runAfter"] = {"kind": steps[-1]["kind"], "name": steps[-1]["metadata"]["name"],
                                    "namespace": self.dataset.namespace}
            steps.append({"apiVersion": constants.API_VERSION, "kind": op["kind"],
                          "metadata": {"name": f"{run_id}-step{index}", "namespace": self.dataset.namespace,
                                       "labels": {"fluid.io/dataflow": run_id}}, "spec": spec})
        return FlowHandle(run_id, steps, Flow(dataset, steps).run(run_id))


class FlowHandle:
    """A submitted flow: every step's status, and a blocking wait."""

    def __init__(self, run_id: str, flow_steps: list[dict[str, Any]], handle: Any) -> None:
        self.run_id, self.flow_steps = run_id, flow_steps
        self._handle = handle  # sdk.RunHandle (local) or sdk.KubeRun

    def get_current_status(self) -> list[dict[str, Any]]:
        """``[{step name: its status}, ...]`` in flow order, as Fluid's SDK reports it."""
        statuses = self._handle.statuses()
        return [{step["metadata"]["name"]: statuses.get(step["metadata"]["name"], {"phase": "Pending"})}
                for step in self.flow_steps]

    def wait(self, timeout_for_each_step: float = constants.DEFAULT_POLL_TIMEOUT) -> None:
        """Block until every step has completed; RuntimeError naming the step that failed
        or timed out."""
        for step in self.flow_steps:
            name = step["metadata"]["name"]
            deadline = time.monotonic() + timeout_for_each_step
            while True:
                status = self._handle.statuses().get(name) or {}
                phase = status.get("phase")
                if phase == "Complete":
                    break
                if phase == "Failed":
                    reasons = "; ".join(c.get("message", "") for c in status.get("conditions") or [])
                    raise RuntimeError(f"failed to wait data operation {name}: it failed: {reasons}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"failed to wait data operation {name}: not completed after "
                                       f"{timeout_for_each_step}s (phase {phase or 'Pending'})")
                time.sleep(0.2)
