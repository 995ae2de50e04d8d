"""``mutate``: the JSON Patch (RFC 6902) that places a Pod near its data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fluid_core.placement.config import PlacementConfig
from fluid_core.placement.terms import INJECTION, PlacementRequest, Terms, terms_for
from fluid_core.placement.view import ClusterView
from vineyard_runtime.naming import PEER_LABEL, safe_value

#: File the client bridge publishes in each dataset mount; clients find the store through it.
CONFIG_FILE = "vineyard-config.yaml"

_NODE_AFFINITY = "/spec/affinity/nodeAffinity"
_PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


def mutate(pod: Mapping[str, Any], view: ClusterView, config: PlacementConfig | None = None) -> list[dict[str, Any]]:
    """The patch for ``pod``: dataset-tier and object-locality node affinity added to
    (never replacing) what the pod has, and ``VINEYARD_CONFIG`` for containers that
    mount a Vineyard dataset. Idempotent: a mutated pod gets an empty patch."""
    meta = pod.get("metadata") or {}
    if str((meta.get("labels") or {}).get(INJECTION, "")).lower() == "false":
        return []
    request = PlacementRequest.from_pod(pod, view)
    patch = _affinity_patch(pod, terms_for(request, view, config))
    patch += _spread_patch(pod, request, view)
    patch += _config_env_patch(pod, request)
    patch += _propagation_patch(pod, request)
    patch += _peer_label_patch(pod, request)
    return patch


def _peer_label_patch(pod: Mapping[str, Any], request: PlacementRequest) -> list[dict[str, Any]]:
    """The peer label of the (first) dataset the pod mounts: its runtime's NetworkPolicy
    admits the pod to etcd (the object directory) and the RPC port."""
    if not request.datasets:
        return []
    labels = (pod.get("metadata") or {}).get("labels")
    if labels is not None and PEER_LABEL in labels:
        return []
    value = safe_value(request.datasets[0])
    if labels is None:
        return [{"op": "add", "path": "/metadata/labels", "value": {PEER_LABEL: value}}]
    return [{"op": "add", "path": "/metadata/labels/" + PEER_LABEL.replace("~", "~0").replace("/", "~1"),
             "value": value}]


def _spread_patch(pod: Mapping[str, Any], request: PlacementRequest, view: ClusterView) -> list[dict[str, Any]]:
    """A replica placed by the bytes of its inputs (``data.fluid.io/replicas``) opts out of
    the scheduler's default spreading, which would even the replicas out over nodes that
    hold nothing: a pod with spread constraints of its own gets no cluster defaults, and
    this one (no selector: it counts no pods) never binds."""
    if not request.replicas or request.replicas <= 1 or request.rank is None or not request.object_keys(view):
        return []
    if (pod.get("spec") or {}).get("topologySpreadConstraints"):
        return []
    return [{"op": "add", "path": "/spec/topologySpreadConstraints", "value": [{
        "maxSkew": request.replicas, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway"}]}]


def _affinity_patch(pod: Mapping[str, Any], terms: Terms) -> list[dict[str, Any]]:
    if not terms:
        return []
    spec = pod.get("spec") or {}
    affinity = spec.get("affinity")
    node_affinity = (affinity or {}).get("nodeAffinity")
    preferred_now = list((node_affinity or {}).get(_PREFERRED) or [])
    required_now = ((node_affinity or {}).get(_REQUIRED) or {}).get("nodeSelectorTerms")
    new_preferred = [t for t in terms.preferred if t not in preferred_now]
    ops: list[dict[str, Any]] = []

    if node_affinity is None:
        value: dict[str, Any] = {}
        if new_preferred:
            value[_PREFERRED] = new_preferred
        if terms.required:
            value[_REQUIRED] = {"nodeSelectorTerms": [{"matchExpressions": list(terms.required)}]}
        if affinity is None:
            return [{"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": value}}]
        return [{"op": "add", "path": _NODE_AFFINITY, "value": value}]

    if new_preferred:
        if _PREFERRED not in node_affinity:
            ops.append({"op": "add", "path": f"{_NODE_AFFINITY}/{_PREFERRED}", "value": new_preferred})
        else:
            ops += [{"op": "add", "path": f"{_NODE_AFFINITY}/{_PREFERRED}/-", "value": t} for t in new_preferred]
    if terms.required:
        if not required_now:  # no terms yet: one term with our requirements
            ops.append({"op": "add", "path": f"{_NODE_AFFINITY}/{_REQUIRED}",
                        "value": {"nodeSelectorTerms": [{"matchExpressions": list(terms.required)}]}})
        else:  # terms are ORed: a requirement must join every one of them
            for index, term in enumerate(required_now):
                have = term.get("matchExpressions")
                missing = [r for r in terms.required if r not in (have or [])]
                base = f"{_NODE_AFFINITY}/{_REQUIRED}/nodeSelectorTerms/{index}/matchExpressions"
                if have is None:
                    ops.append({"op": "add", "path": base, "value": missing})
                else:
                    ops += [{"op": "add", "path": f"{base}/-", "value": r} for r in missing]
    return ops


def _propagation_patch(pod: Mapping[str, Any], request: PlacementRequest) -> list[dict[str, Any]]:
    """``mountPropagation: HostToContainer`` on the containers' mounts of a dataset, unless
    they say otherwise: the dataset's FUSE view (``objects/``), mounted by the node's bridge,
    reaches the pod, also when the bridge mounts it again after the pod started."""
    if not request.datasets:
        return []
    spec = pod.get("spec") or {}
    volumes = {v.get("name"): (v.get("persistentVolumeClaim") or {}).get("claimName")
               for v in spec.get("volumes") or []}
    return [{"op": "add", "path": f"/spec/containers/{index}/volumeMounts/{at}/mountPropagation",
             "value": "HostToContainer"}
            for index, container in enumerate(spec.get("containers") or [])
            for at, mount in enumerate(container.get("volumeMounts") or [])
            if volumes.get(mount.get("name")) in request.datasets and "mountPropagation" not in mount]


def _config_env_patch(pod: Mapping[str, Any], request: PlacementRequest) -> list[dict[str, Any]]:
    """``VINEYARD_CONFIG`` -> the bridge's config file inside the dataset mount."""
    if not request.datasets:
        return []
    spec = pod.get("spec") or {}
    volumes = {v.get("name"): (v.get("persistentVolumeClaim") or {}).get("claimName")
               for v in spec.get("volumes") or []}
    ops: list[dict[str, Any]] = []
    for index, container in enumerate(spec.get("containers") or []):
        env = container.get("env")
        if any(e.get("name") == "VINEYARD_CONFIG" for e in env or []):
            continue
        mount = next((m for m in container.get("volumeMounts") or []
                      if volumes.get(m.get("name")) in request.datasets), None)
        if mount is None:
            continue
        value = {"name": "VINEYARD_CONFIG", "value": f"{mount['mountPath'].rstrip('/')}/{CONFIG_FILE}"}
        if env is None:
            ops.append({"op": "add", "path": f"/spec/containers/{index}/env", "value": [value]})
        else:
            ops.append({"op": "add", "path": f"/spec/containers/{index}/env/-", "value": value})
    return ops
