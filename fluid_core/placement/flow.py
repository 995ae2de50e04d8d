"""DataFlow affinity: an operation runs where (or near where) its predecessor ran."""

from __future__ import annotations

from typing import Any

from fluid_core.placement.view import ClusterView

HOSTNAME = "kubernetes.io/hostname"


def follow(strategy: Any, node: str, view: ClusterView) -> dict[str, Any] | None:
    """The nodeAffinity of an operation whose predecessor ran on ``node``.

    ``strategy`` is a ``runAfter.affinityStrategy`` (model or dict): ``Require`` keeps
    the operation on nodes sharing the predecessor's value of each ``requires[].name``
    label; ``Prefer`` weights them by ``prefers[].weight``. The default label is the
    hostname, i.e. the same node. None when there is no strategy.
    """
    if strategy is None:
        return None
    data = strategy.to_dict() if hasattr(strategy, "to_dict") else dict(strategy)
    labels = {HOSTNAME: node, **view.node_labels(node)}
    if data.get("policy", "Prefer") == "Require":
        keys = [r.get("name", HOSTNAME) for r in data.get("requires") or []] or [HOSTNAME]
        expressions = [{"key": k, "operator": "In", "values": [labels[k]]} for k in keys if k in labels]
        return {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": expressions}]}} if expressions else None
    prefers = data.get("prefers") or [{"name": HOSTNAME, "weight": 100}]
    terms = [{"weight": int(p.get("weight", 100)), "preference": {"matchExpressions": [
        {"key": p.get("name", HOSTNAME), "operator": "In", "values": [labels[p.get("name", HOSTNAME)]]}]}}
        for p in prefers if p.get("name", HOSTNAME) in labels]
    return {"preferredDuringSchedulingIgnoredDuringExecution": terms} if terms else None


def with_node_selector(affinity: dict[str, Any] | None, selector: dict[str, str]) -> dict[str, Any] | None:
    """``affinity`` (a nodeAffinity, or None) also requiring the labels of a pod's
    ``nodeSelector``: each label is added to every required term (terms are ORed, the
    expressions of one term ANDed)."""
    if not selector:
        return affinity
    expressions = [{"key": k, "operator": "In", "values": [v]} for k, v in sorted(selector.items())]
    out = dict(affinity or {})
    required = out.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms") or [{"matchExpressions": []}]
    out["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
        {**term, "matchExpressions": list(term.get("matchExpressions") or []) + expressions} for term in terms]}
    return out
