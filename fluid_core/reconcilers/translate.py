"""From the API models to the runtime description the manifests are built from."""

from __future__ import annotations

from typing import Any

from fluid_core.models import Dataset, VineyardRuntime
from fluid_core.models.runtime import NetworkMode
from vineyard_runtime.kube.manifests import Image, KubeRuntime
from vineyard_runtime.spec import SPILL_LOWER_RATE, SPILL_UPPER_RATE

_TRUE = {"true", "1", "yes", "on"}


def owner_reference(resource: VineyardRuntime) -> dict[str, Any] | None:
    """An ownerReference to the runtime (None until it has a uid)."""
    if not resource.metadata.uid:
        return None
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "name": resource.name,
        "uid": resource.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def kube_runtime(runtime: VineyardRuntime, dataset: Dataset | None = None) -> KubeRuntime:
    """The KubeRuntime for a VineyardRuntime (and its Dataset's access modes)."""
    spec = runtime.spec
    spill = spec.spill_level()
    options = spec.worker.options
    return KubeRuntime(
        name=runtime.name,
        namespace=runtime.namespace,
        workers=spec.replicas,
        size=spec.memory_quota(),
        worker_image=Image(spec.worker.image, spec.worker.image_tag, spec.worker.image_pull_policy),
        master_image=Image(spec.master.image, spec.master.image_tag, spec.master.image_pull_policy),
        bridge_image=Image(spec.fuse.image, spec.fuse.image_tag, spec.fuse.image_pull_policy),
        master_replicas=spec.master.replicas,
        external_etcd=spec.master.endpoint.uri if spec.master.endpoint else None,
        etcd_persistence=spec.master.persistence.enabled,
        etcd_volume_size=spec.master.persistence.size,
        etcd_storage_class=spec.master.persistence.storage_class_name,
        client_port=spec.master.ports.client,
        peer_port=spec.master.ports.peer,
        rpc_port=spec.worker.ports.rpc,
        metrics_port=spec.worker.ports.metrics,
        spill_path=spill.path if spill else None,
        spill_lower_rate=float(spill.low) if spill and spill.low else SPILL_LOWER_RATE,
        spill_upper_rate=float(spill.high) if spill and spill.high else SPILL_UPPER_RATE,
        compression=options.get("compression", "false").lower() in _TRUE,
        reserve_memory=options.get("reserve_memory", "false").lower() in _TRUE,
        worker_env=dict(spec.worker.env),
        worker_node_selector=dict(spec.worker.node_selector),
        bridge_env=dict(spec.fuse.env),
        bridge_options={k: v for k, v in spec.fuse.options.items() if k != "view"},
        fuse_view=spec.fuse.options.get("view", "false").lower() in _TRUE,
        master_resources=spec.master.resources,
        worker_resources=spec.worker.resources,
        bridge_resources=spec.fuse.resources,
        host_network=spec.worker.network_mode == NetworkMode.HOST,
        access_modes=tuple(dataset.spec.access_modes) if dataset else ("ReadOnlyMany",),
        owner=owner_reference(runtime),
    )
