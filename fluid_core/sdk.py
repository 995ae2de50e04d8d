"""The Python SDK: build a flow from a dataset, run it, watch it.

    ds = Dataset("demo", backend=cluster)              # a LocalCluster
    flow = (ds.preload("data/raw.parquet")
              .process(features, inputs=["raw"])
              .process(train, inputs=["features", "labels"], outputs=["model"]))
    handle = flow.run("run-1")
    handle.wait(timeout=600)                           # FlowFailed when a step failed

Each step becomes a Data* resource linked to the one before by ``runAfter``
(``affinityStrategy: Require`` by default, so a step runs on its predecessor's node);
``flow.resources()`` gives them as dicts, the same documents ``fluidv run`` takes.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fluid_core.errors import FluidError
from fluid_core.flow.scripts import script_path, stop_if_importing
from fluid_core.models import API_VERSION, parse


class SdkError(FluidError):
    """A flow that cannot be built as asked; the message says how to fix it."""


class FlowFailed(SdkError, RuntimeError):
    """A flow ended with a failed step. ``step`` and ``kind`` name the first one that
    failed, ``reason`` says why (a local step's reason ends with its log's tail), and
    ``statuses`` holds every step's status, as ``wait(check=False)`` returns them."""

    def __init__(self, run_id: str, step: str, kind: str, reason: str, statuses: Any) -> None:
        self.run_id, self.step, self.kind, self.reason, self.statuses = run_id, step, kind, reason, statuses
        super().__init__(f"flow {run_id} failed: {kind} {step} failed: {reason or 'no reason given'}")


def first_failure(run_id: str, statuses: list[dict[str, Any]]) -> FlowFailed | None:
    """FlowFailed for the first failed step of ``statuses`` (``kind``, ``name``,
    ``phase``, ``message`` each, in flow order), None when no step failed. The first
    one is the cause: the steps after a failed one fail without running."""
    failed = next((s for s in statuses if s.get("phase") == "Failed"), None)
    if failed is None:
        return None
    return FlowFailed(run_id, str(failed.get("name")), str(failed.get("kind")), str(failed.get("message") or ""),
                      statuses)


def function_reference(func: Callable[..., Any]) -> str:
    """``module:qualname`` of ``func`` (``path.py:qualname`` for a script's function)."""
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or "<" in qualname:
        raise SdkError(f"{func!r} cannot be run in a step process: use a module-level function "
                       "(not a lambda or a nested function)")
    if module == "__main__" or script_path(sys.modules.get(module)):
        path = script_path(sys.modules.get(module))
        if not path:
            raise SdkError("functions defined interactively cannot run in a step; put them in a module")
        return f"{path}:{qualname}"
    return f"{module}:{qualname}"


@dataclass
class Flow:
    """Steps on one dataset, each running after the previous one."""

    dataset: "Dataset"
    steps: list[dict[str, Any]] = field(default_factory=list)

    def _then(self, kind: str, spec: dict[str, Any], name: str | None, affinity: str | None) -> "Flow":
        name = name or f"{self.dataset.name}-{len(self.steps) + 1}-{kind.lower()}"
        dataset: Any = {"name": self.dataset.name, "namespace": self.dataset.namespace}
        if kind == "DataBackup":
            dataset = self.dataset.name  # Fluid's shape: a dataset of the backup's namespace
        spec = {"dataset": dataset, **spec}
        if self.steps:
            previous = self.steps[-1]
            spec["runAfter"] = {"kind": previous["kind"], "name": previous["metadata"]["name"]}
            if affinity:
                spec["runAfter"]["affinityStrategy"] = {"policy": affinity}
        step = {"apiVersion": API_VERSION, "kind": kind,
                "metadata": {"name": name, "namespace": self.dataset.namespace}, "spec": spec}
        parse(step)  # report a bad step where it is built
        return Flow(self.dataset, self.steps + [step])

    def process(self, processor: Callable[..., Any] | str, *, inputs: Iterable[str] = (),
                outputs: Iterable[str] = (), params: dict[str, Any] | None = None, name: str | None = None,
                affinity: str | None = "Require") -> "Flow":
        """Run ``processor(ctx)`` (a function or ``"module:function"``) with the dataset."""
        reference = processor if isinstance(processor, str) else function_reference(processor)
        spec = {"processor": {"function": reference, "params": {k: str(v) for k, v in (params or {}).items()}},
                "inputs": list(inputs), "outputs": list(outputs)}
        return self._then("DataProcess", spec, name, affinity)

    def preload(self, path: str, *, key: str | None = None, name: str | None = None) -> "Flow":
        """Load files (Parquet, CSV, Arrow, ``.npy``, or a backup) into the dataset."""
        return self._then("DataLoad", {"target": [{"path": path, **({"name": key} if key else {})}]}, name, None)

    def migrate(self, path: str, direction: str = "out", *, prefix: str = "/", name: str | None = None) -> "Flow":
        """Copy the dataset to external storage (``out``) or files into it (``in``)."""
        end = {"dataset": {"name": self.dataset.name, "path": prefix}}
        external = {"externalStorage": {"uri": path}}
        if direction not in ("in", "out"):
            raise SdkError(f"direction is 'in' or 'out', not {direction!r}")
        spec = {"from": end, "to": external} if direction == "out" else {"from": external, "to": end}
        return self._then("DataMigrate", spec, name, None)

    def backup(self, path: str, *, name: str | None = None) -> "Flow":
        """Write every object of the dataset to ``path`` (restore with ``preload(path)``)."""
        return self._then("DataBackup", {"backupPath": path}, name, None)

    def resources(self) -> list[dict[str, Any]]:
        """The Dataset and one resource per step, as ``fluidv run`` takes them."""
        return [self.dataset.resource()] + [dict(step) for step in self.steps]

    def run(self, run_id: str | None = None, *, show: bool = False) -> "RunHandle | KubeRun":
        """Start the flow on the dataset's backend (a local cluster, or a Kubernetes
        ``KubeClient``: one custom resource per step); returns at once. Inside a step
        that imports this flow's script, the import stops here instead."""
        stop_if_importing("flow.run()")
        if _is_kube(self.dataset.backend):
            return KubeRun(self, run_id)
        return RunHandle(self, run_id, show).start()


class Dataset:
    """A dataset on a backend (a ``LocalCluster``); where flows start."""

    def __init__(self, name: str, namespace: str = "default", backend: Any = None,
                 spec: dict[str, Any] | None = None) -> None:
        self.name, self.namespace, self.backend = name, namespace, backend
        #: The Dataset's spec (``mounts``: the storage behind it), as Fluid writes it.
        self.spec = dict(spec or {})
        parse(self.resource())

    def resource(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": "Dataset",
                "metadata": {"name": self.name, "namespace": self.namespace}, "spec": dict(self.spec)}

    def bind_runtime(self, replicas: int = 3, cache_capacity_GiB: float = 1, cache_medium: str = "MEM") -> "Dataset":  # noqa: N803 - Fluid's spelling
        """Start a local cluster of ``replicas`` nodes when the dataset has no backend."""
        if cache_medium != "MEM":
            raise SdkError("the local cluster caches in memory only: cache_medium='MEM'")
        if self.backend is None:
            stop_if_importing("bind_runtime()")
            from vineyard_runtime.local import LocalCluster  # noqa: PLC0415

            self.backend = LocalCluster(nodes=replicas, size=f"{int(cache_capacity_GiB * 1024)}Mi").start()
        return self

    def _flow(self) -> Flow:
        return Flow(self)

    def process(self, processor: Callable[..., Any] | str, **kwargs: Any) -> Flow:
        return self._flow().process(processor, **kwargs)

    def preload(self, path: str, **kwargs: Any) -> Flow:
        return self._flow().preload(path, **kwargs)

    def migrate(self, path: str, direction: str = "out", **kwargs: Any) -> Flow:
        return self._flow().migrate(path, direction, **kwargs)

    def backup(self, path: str, **kwargs: Any) -> Flow:
        return self._flow().backup(path, **kwargs)


def _is_kube(backend: Any) -> bool:
    from fluid_core.kube import KubeClient  # noqa: PLC0415

    return isinstance(backend, KubeClient)


class KubeRun:
    """A flow on Kubernetes: its custom resources, reconciled by the operator."""

    def __init__(self, flow: Flow, run_id: str | None) -> None:
        from fluid_core.kube import Ref, ref_of  # noqa: PLC0415

        self.kube, self.run_id = flow.dataset.backend, run_id or "flow"
        dataset = flow.dataset.resource()
        if self.kube.get(ref_of(dataset)) is None:
            self.kube.apply(dataset)
        self.refs = []
        for step in flow.steps:
            step = {**step, "metadata": {**step["metadata"], "labels": {"fluid.io/run": self.run_id}}}
            self.kube.apply(step)
            self.refs.append(Ref(step["apiVersion"], step["kind"], step["metadata"]["namespace"],
                                 step["metadata"]["name"]))

    def status(self) -> list[dict[str, Any]]:
        """Each step's kind, name and status as the operator reports it."""
        out = []
        for ref in self.refs:
            status = (self.kube.get(ref) or {}).get("status") or {}
            reasons = "; ".join(c.get("message", "") for c in status.get("conditions") or [] if c.get("message"))
            out.append({"kind": ref.kind, "name": ref.name, "phase": status.get("phase", "Pending"),
                        "node": status.get("node"), "duration": status.get("duration"), "message": reasons})
        return out

    def statuses(self) -> dict[str, dict[str, Any]]:
        """Each step's name and its whole status, as the operator wrote it."""
        return {str(ref.name): (self.kube.get(ref) or {}).get("status") or {"phase": "Pending"} for ref in self.refs}

    def wait(self, timeout: float | None = None, poll: float = 1.0, *, check: bool = True) -> list[dict[str, Any]]:
        """Poll until every step is Complete or Failed; the steps' statuses. FlowFailed
        naming the first failed step (``check=False``: return the statuses anyway);
        TimeoutError at ``timeout``."""
        import time  # noqa: PLC0415

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status()
            if all(s["phase"] in ("Complete", "Failed") for s in status):
                failure = first_failure(self.run_id, status) if check else None
                if failure is not None:
                    raise failure
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"flow {self.run_id} still runs after {timeout}s")
            time.sleep(poll)


class RunHandle:
    """A running flow: ``status()`` at any time, ``wait()`` for the end."""

    def __init__(self, flow: Flow, run_id: str | None, show: bool) -> None:
        from fluid_core.flow import LocalRunner  # noqa: PLC0415

        if flow.dataset.backend is None:
            raise SdkError("the dataset has no backend: pass backend=LocalCluster(...) or call bind_runtime()")
        self._live: Any = None
        on_change = None
        if show:
            from rich.live import Live  # noqa: PLC0415

            from fluid_core.display import operations_table  # noqa: PLC0415

            self._live = Live(auto_refresh=False)
            on_change = lambda runs: self._live.update(operations_table(runs), refresh=True)  # noqa: E731
        self.runner = LocalRunner(flow.dataset.backend, [parse(r) for r in flow.resources()],
                                  run_id=run_id, on_change=on_change)
        self.run_id = self.runner.run_id
        self._thread = threading.Thread(target=self._run, name=f"flow-{self.run_id}", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> "RunHandle":
        if self._live is not None:
            self._live.start()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised by wait()
            self._error = exc
        finally:
            if self._live is not None:
                self._live.stop()

    def status(self) -> list[dict[str, Any]]:
        """Each step's phase, node, duration and I/O."""
        return [run.summary() for run in self.runner.operations]

    def statuses(self) -> dict[str, dict[str, Any]]:
        """Each step's name and its whole status, as its custom resource would carry it."""
        return {run.name: run.status() for run in self.runner.operations}

    def wait(self, timeout: float | None = None, *, check: bool = True) -> list[dict[str, Any]]:
        """Wait until the flow has finished; each step's final status. FlowFailed naming
        the first failed step, with its log's tail (``check=False``: return the statuses
        anyway); TimeoutError at ``timeout``."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"flow {self.run_id} still runs after {timeout}s")
        if self._error is not None:
            raise self._error
        status = self.status()
        failure = first_failure(self.run_id, status) if check else None
        if failure is not None:
            raise failure
        return status
