"""The engine protocol a runtime reconciler drives, and the Vineyard engine."""

from __future__ import annotations

from typing import Any, Protocol

from fluid_core.reconcilers.observed import RuntimeObserved, Workload
from vineyard_runtime.kube import manifests
from vineyard_runtime.naming import (
    cache_node_label,
    fuse_node_label,
    vineyard_cache_node_label,
)
from vineyard_runtime.kube.manifests import KubeRuntime


class Engine(Protocol):
    """What a runtime type provides to the generic runtime reconciler."""

    def setup_master(self) -> list[dict[str, Any]]: ...
    def master_ready(self, observed: RuntimeObserved) -> Workload | None: ...
    def setup_workers(self, observed: RuntimeObserved | None = None) -> list[dict[str, Any]]: ...
    def workers_ready(self, observed: RuntimeObserved) -> Workload | None: ...
    def setup_bridge(self) -> list[dict[str, Any]]: ...
    def bind(self) -> list[dict[str, Any]]: ...
    def node_labels(self) -> dict[str, str]: ...
    def master_persistence(self) -> str: ...
    def worker_selector(self) -> str: ...
    def value_file(self) -> str: ...
    def teardown(self) -> list[dict[str, Any]]: ...
    def images(self) -> dict[str, str]: ...
    def privileged(self) -> dict[str, str]: ...
    def host_paths(self) -> dict[str, str]: ...


def starting_workers(wanted: int, workers: Workload | None) -> int:
    """How many workers the StatefulSet runs now: one more each time all it runs are
    ready, up to ``wanted`` (fewer at once). vineyardd 0.24.2 workers that join the
    cluster's etcd at the same moment wait on its lock and sometimes abort; the local
    cluster starts its nodes one after another too."""
    if workers is None:
        return min(wanted, 1)
    if workers.desired >= wanted:
        return wanted
    return min(wanted, max(workers.desired, workers.ready + 1))


class VineyardEngine:
    """etcd master, vineyardd workers, the client bridge and the dataset volume."""

    def __init__(self, runtime: KubeRuntime) -> None:
        self.rt = runtime

    def images(self) -> dict[str, str]:
        """The images the runtime asks to run, by the field that names them."""
        images = {"spec.worker.image": self.rt.worker_image.ref, "spec.fuse.image": self.rt.bridge_image.ref}
        if not self.external_master:
            images["spec.master.image"] = self.rt.master_image.ref
        return images

    def privileged(self) -> dict[str, str]:
        """The images the runtime would run privileged, by the field that asks for it."""
        return {"spec.fuse.options.view": self.rt.bridge_image.ref} if self.rt.fuse_view else {}

    def host_paths(self) -> dict[str, str]:
        """The node paths the runtime asks for (its socket directory is the operator's own)."""
        return {"spec.tieredstore.levels[].path": self.rt.spill_path} if self.rt.spill_path else {}

    @property
    def external_master(self) -> bool:
        return self.rt.external_etcd is not None

    def setup_master(self) -> list[dict[str, Any]]:
        return manifests.master_objects(self.rt)

    def master_ready(self, observed: RuntimeObserved) -> Workload | None:
        if self.external_master:
            return Workload(desired=1, ready=1, current=1)
        return observed.master

    def setup_workers(self, observed: RuntimeObserved | None = None) -> list[dict[str, Any]]:
        """The workers' objects; given what was observed, with only as many workers as
        may start now (:func:`starting_workers`)."""
        replicas = None if observed is None else starting_workers(self.rt.workers, observed.workers)
        return manifests.worker_objects(self.rt, replicas) + [manifests.rpc_conf(self.rt),
                                                              manifests.network_policy(self.rt)]

    def workers_ready(self, observed: RuntimeObserved) -> Workload | None:
        """The workers' counts against the runtime's replicas (not the StatefulSet's,
        which grows one worker at a time)."""
        if observed.workers is None:
            return None
        return Workload(desired=self.rt.workers, ready=observed.workers.ready, current=observed.workers.current)

    def setup_bridge(self) -> list[dict[str, Any]]:
        return manifests.bridge_objects(self.rt)

    def bind(self) -> list[dict[str, Any]]:
        return manifests.volume_objects(self.rt)

    def node_labels(self) -> dict[str, str]:
        rt = self.rt
        return {
            cache_node_label(rt.namespace, rt.name): "true",
            vineyard_cache_node_label(rt.namespace, rt.name): "true",
            fuse_node_label(rt.namespace, rt.name): "true",
        }

    def worker_selector(self) -> str:
        """The label selector of the worker pods (the ``scale`` subresource reads it)."""
        return ",".join(f"{k}={v}" for k, v in manifests.selector(self.rt, "worker").items())

    def value_file(self) -> str:
        """The ConfigMap holding the runtime's settings (Fluid: its Helm values)."""
        return self.rt.rpc_conf_name

    def master_persistence(self) -> str:
        """Where the master keeps metadata, and what that means for the user."""
        if self.rt.external_etcd:
            return f"external etcd at {self.rt.external_etcd}"
        if self.rt.etcd_persistence:
            return "PersistentVolumeClaim"
        return (
            "emptyDir: metadata is lost when the master pod restarts; the workers are then "
            "restarted to register again and the objects they held are lost. "
            "Set spec.master.persistence.enabled to keep it"
        )

    def all_objects(self) -> list[dict[str, Any]]:
        """Every object of a fully set-up runtime (``fluidv render``)."""
        return self.setup_master() + self.setup_workers() + self.setup_bridge() + self.bind()

    def teardown(self) -> list[dict[str, Any]]:
        """Every object to delete, dependents first."""
        return list(reversed(manifests.all_objects(self.rt)))
