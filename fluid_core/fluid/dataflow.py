"""``FluidDataFlow`` and ``FlowHandle``: Fluid's SDK flows, run by the local runner or
by the operator. Steps are named ``<run id>-step<n>`` and follow each other by
``runAfter``, as in Fluid's SDK.

Fluid 1.0's announcement writes its flows shorter than fluid-pysdk's signatures allow,
and they run as written: ``load`` is ``preload``; ``migrate`` without
``external_storage`` copies between the dataset and its own mount; ``process`` without
``dataset_mountpath`` shows the dataset at ``/data``; ``run()`` without a run id makes
one (``<dataset>-<8 hex digits>``)."""

from __future__ import annotations

import secrets
import time
from typing import Any

from fluid_core.fluid import constants
from fluid_core.fluid.models import wire
from fluid_core.sdk import Flow, FlowFailed, SdkError


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

    def load(self, target_path: Any = "/", load_metadata: bool = False) -> "FluidDataFlow":
        """Fluid's other name for ``preload`` (a DataLoad of ``target_path``)."""
        return self.preload(target_path, load_metadata)

    def migrate(self, path: str, migrate_direction: str, external_storage: Any = None) -> "FluidDataFlow":
        """Copy between ``external_storage`` and the dataset path ``path``: ``from``
        external storage into the dataset, or ``to`` it. Without ``external_storage``
        the other side is the dataset's own mount: ``from`` reads the mount's files at
        ``path`` into the cache, ``to`` writes the objects under ``path`` back there."""
        side = {"dataset": {**self._ref(), "path": path}}
        if migrate_direction not in (constants.DATA_MIGRATE_DIRECTION_FROM, constants.DATA_MIGRATE_DIRECTION_TO):
            raise SdkError(f"migrate_direction is {constants.DATA_MIGRATE_DIRECTION_FROM!r} or "
                           f"{constants.DATA_MIGRATE_DIRECTION_TO!r}, not {migrate_direction!r}")
        into = migrate_direction == constants.DATA_MIGRATE_DIRECTION_FROM
        if external_storage is None:
            external_storage = {"uri": own_mount(self.dataset.obj.spec, path, into=into)}
        storage = {"externalStorage": wire(external_storage)}
        spec = {"from": storage, "to": side} if into else {"from": side, "to": storage}
        return self._add(constants.DATA_MIGRATE_KIND, spec)

    def process(self, dataset_mountpath: str = constants.DEFAULT_DATASET_MOUNTPATH, processor: Any = None,
                sub_path: str | None = None) -> "FluidDataFlow":
        """Run ``processor`` (a script or job processor) with the dataset at
        ``dataset_mountpath`` (``/data`` by default)."""
        if processor is None:
            raise SdkError("process() needs a processor: processor=create_processor(func) or "
                           "models.Processor(script=models.ScriptProcessor(...))")
        dataset = {**self._ref(), "mountPath": dataset_mountpath, **({"subPath": sub_path} if sub_path else {})}
        return self._add(constants.DATA_PROCESS_KIND, {"dataset": dataset, "processor": wire(processor)})

    def run(self, run_id: str | None = None,
            ttl_seconds_after_finished: int = constants.DEFAULT_DATAFLOW_TIME_TO_LIVE) -> "FlowHandle":
        """Submit the flow; its handle. The dataset must have a runtime (``bind_runtime``).
        Without ``run_id`` the run is named ``<dataset>-<8 hex digits>``."""
        dataset = self.dataset.obj
        if dataset.backend is None:
            raise RuntimeError(f"dataset {self.dataset.name} is not bound: call bind_runtime() first")
        run_id = run_id or f"{self.dataset.name[:40].rstrip('-.')}-{secrets.token_hex(4)}"
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
        """Block until every step has completed. FlowFailed (a RuntimeError, as Fluid's
        SDK raises) naming the step that failed and why; RuntimeError for a step that
        did not complete in time. ``get_current_status()`` reads the statuses without
        raising."""
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
                    raise FlowFailed(self.run_id, name, str(step["kind"]), reasons, self.get_current_status())
                if time.monotonic() > deadline:
                    raise RuntimeError(f"failed to wait data operation {name}: not completed after "
                                       f"{timeout_for_each_step}s (phase {phase or 'Pending'})")
                time.sleep(0.2)


def own_mount(spec: dict[str, Any], path: str, *, into: bool) -> str:
    """Where a migration without external storage reads (``into`` the dataset) or writes
    the dataset path ``path``: the dataset's own mount. Read: the mount's place of
    ``path``; written: the mount's root, under which the objects' keys (which start
    with ``path``) are the files' paths."""
    from fluid_core.models.mounts import MountError, resolve  # noqa: PLC0415

    mounts = list(spec.get("mounts") or [])
    if not mounts:
        raise SdkError(f"migrate({path!r}) without external_storage uses the dataset's own mount, and this "
                       "dataset has none: create it with mount_point=..., or pass "
                       "external_storage=models.ExternalStorage(uri=...)")
    try:
        place, _, root = resolve(mounts, path)
    except MountError as exc:
        raise SdkError(f"migrate({path!r}) without external_storage: {exc}") from None
    if into:
        return place
    try:
        top = resolve(mounts, "/")[2]  # the mount that appears at the dataset's root
    except MountError:
        top = None
    if top != root:
        raise SdkError(f"migrate({path!r}, 'to') without external_storage writes to the dataset's mount at /, and "
                       "the mount holding it appears elsewhere: pass external_storage=models.ExternalStorage(uri=...)")
    return root
