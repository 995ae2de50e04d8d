"""``rank_nodes``: where local mode runs a stage, scored like the Kubernetes scheduler."""

from __future__ import annotations

from fluid_core.placement.config import PlacementConfig
from fluid_core.placement.terms import PlacementRequest, matches, terms_for
from fluid_core.placement.view import ClusterView


def rank_nodes(request: PlacementRequest, view: ClusterView,
               config: PlacementConfig | None = None) -> list[tuple[str, int]]:
    """Nodes that meet the request's required terms, best first: the score is the sum
    of the weights of the preferred terms a node meets (ties by name)."""
    terms = terms_for(request, view, config)
    scored = []
    for node in view.nodes:
        labels = view.node_labels(node)
        if terms.required and not matches(node, labels, {"matchExpressions": list(terms.required)}):
            continue
        score = sum(t["weight"] for t in terms.preferred if matches(node, labels, t["preference"]))
        scored.append((node, score))
    return sorted(scored, key=lambda item: (-item[1], item[0]))
