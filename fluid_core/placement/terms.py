"""The one placement rule: which node-affinity terms a request gets, and how nodes score.

``mutate`` writes these terms into a Pod; ``rank_nodes`` scores nodes with the same
terms the way the Kubernetes scheduler would, so local and Kubernetes placement agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fluid_core.models.object_names import object_name
from fluid_core.placement.config import NODE_TIER, PlacementConfig
from fluid_core.placement.view import ClusterView
from vineyard_runtime.naming import cache_node_label

#: Pod annotation listing the objects a pod reads: ``"key1,key2"`` or ``"ns/dataset/key"``.
CONSUMES = "data.fluid.io/consumes"
#: Pod annotation: how many replicas of the same owner share the objects (spreading).
REPLICAS = "data.fluid.io/replicas"
INJECTION = "fluid.io/enable-injection"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
JOB_INDEX = "batch.kubernetes.io/job-completion-index"


def required_label(dataset: str) -> str:
    """The pod label that makes the node tier of ``dataset`` required (value ``required``)."""
    return f"fluid.io/dataset.{dataset}.sched"


@dataclass(frozen=True)
class PlacementRequest:
    """Where a consumer wants to be: near datasets' caches and near the objects it reads."""

    namespace: str = "default"
    datasets: tuple[str, ...] = ()
    required: frozenset[str] = frozenset()
    consumes: tuple[str, ...] = ()
    rank: int | None = None
    replicas: int | None = None
    #: A nodeAffinity to honour as well (a DataFlow step following its predecessor).
    affinity: Mapping[str, Any] | None = None

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any], view: ClusterView) -> "PlacementRequest":
        """The datasets the pod mounts (PVCs named like a known dataset), its
        ``.sched: required`` labels, its ``consumes`` annotation and replica rank."""
        meta = pod.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        datasets = tuple(dict.fromkeys(
            claim for claim in claims_of(pod) if f"{namespace}/{claim}" in view.datasets))
        required = frozenset(d for d in datasets if labels.get(required_label(d)) == "required")
        consumes = tuple(k.strip() for k in str(annotations.get(CONSUMES, "")).split(",") if k.strip())
        rank = _int(labels.get(POD_INDEX_LABEL, annotations.get(JOB_INDEX)))
        return cls(namespace=namespace, datasets=datasets, required=required, consumes=consumes,
                   rank=rank, replicas=_int(annotations.get(REPLICAS)))

    def object_keys(self, view: ClusterView) -> list[str]:
        """The consumed objects as ``ns/dataset/key``, resolved against the pod's datasets."""
        keys = []
        for key in self.consumes:
            if key.count("/") >= 2:
                keys.append(key)
                continue
            for dataset in self.datasets or ():
                full = object_name(self.namespace, dataset, key)
                if full in view.objects:
                    keys.append(full)
                    break
        return keys


@dataclass(frozen=True)
class Terms:
    """Node-selector requirements every node must meet, and weighted preferences."""

    required: tuple[dict[str, Any], ...] = ()
    preferred: tuple[dict[str, Any], ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.required or self.preferred)


def terms_for(request: PlacementRequest, view: ClusterView, config: PlacementConfig | None = None) -> Terms:
    """The affinity terms of ``request``: dataset tiers first, then object locality."""
    config = config or PlacementConfig()
    required: list[dict[str, Any]] = []
    preferred: list[dict[str, Any]] = []
    for dataset in request.datasets:
        cache_key = cache_node_label(request.namespace, dataset)
        cache_nodes = view.datasets.get(f"{request.namespace}/{dataset}", ())
        for tier in config.tiers:
            if tier.label == NODE_TIER:
                expression = _expression(cache_key, ["true"])
                if dataset in request.required:
                    required.append(expression)
                else:
                    preferred.append(_preferred(tier.weight, expression))
                continue
            values = sorted({view.labels(n)[tier.label] for n in cache_nodes if tier.label in view.labels(n)})
            if values:
                preferred.append(_preferred(tier.weight, _expression(tier.label, values)))
    if request.affinity:
        for term in (request.affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get(
                "nodeSelectorTerms", [])[:1]:
            required += term.get("matchExpressions") or []
        preferred += request.affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    holding = view.object_bytes(request.object_keys(view))
    target = pick_holder(holding, request.rank, request.replicas)
    if target is not None:
        for tier in config.object_weights:
            if tier.label == NODE_TIER:
                preferred.append({"weight": tier.weight, "preference": {
                    "matchFields": [{"key": "metadata.name", "operator": "In", "values": [target]}]}})
            elif tier.label in view.labels(target):
                preferred.append(_preferred(tier.weight, _expression(tier.label, [view.labels(target)[tier.label]])))
    return Terms(tuple(_unique(required)), tuple(_unique(preferred)))


def pick_holder(holding: Mapping[str, int], rank: int | None, replicas: int | None) -> str | None:
    """The node for a consumer: the one holding most bytes; with ``replicas`` > 1, rank
    ``rank`` goes to a node in proportion to the bytes each node holds."""
    nodes = sorted((n for n, b in holding.items() if b > 0), key=lambda n: (-holding[n], n))
    if not nodes:
        return None
    if not replicas or replicas <= 1 or rank is None:
        return nodes[0]
    total = sum(holding[n] for n in nodes)
    quotas = {n: replicas * holding[n] / total for n in nodes}
    counts = {n: int(q) for n, q in quotas.items()}
    leftover = replicas - sum(counts.values())
    for n in sorted(nodes, key=lambda n: (-(quotas[n] - counts[n]), -holding[n], n))[:leftover]:
        counts[n] += 1
    position = rank % replicas
    for n in nodes:
        if position < counts[n]:
            return n
        position -= counts[n]
    return nodes[0]  # unreachable: the counts add up to replicas


def matches(node: str, labels: Mapping[str, str], term: Mapping[str, Any]) -> bool:
    """Whether a node meets a NodeSelectorTerm (expressions on labels, fields on the name)."""
    for requirement in term.get("matchExpressions") or []:
        if not _meets(labels.get(requirement["key"]), requirement):
            return False
    for requirement in term.get("matchFields") or []:
        value = node if requirement["key"] == "metadata.name" else None
        if not _meets(value, requirement):
            return False
    return True


def _meets(value: str | None, requirement: Mapping[str, Any]) -> bool:
    operator = requirement["operator"]
    values = requirement.get("values") or []
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and value.lstrip("-").isdigit():
        return int(value) > int(values[0]) if operator == "Gt" else int(value) < int(values[0])
    return False


def _expression(key: str, values: list[str]) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": list(values)}


def _preferred(weight: int, expression: dict[str, Any]) -> dict[str, Any]:
    return {"weight": weight, "preference": {"matchExpressions": [expression]}}


def _unique(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def claims_of(pod: Mapping[str, Any]) -> list[str]:
    """The PersistentVolumeClaims ``pod`` mounts, by name."""
    return [str((v.get("persistentVolumeClaim") or {}).get("claimName"))
            for v in (pod.get("spec") or {}).get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("claimName")]


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
