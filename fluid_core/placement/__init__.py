"""Placement: put consumers on the nodes that hold their data (one rule for both modes)."""

from fluid_core.placement.config import InvalidPlacementConfig, PlacementConfig, Tier
from fluid_core.placement.mutate import mutate
from fluid_core.placement.rank import rank_nodes
from fluid_core.placement.terms import PlacementRequest, terms_for
from fluid_core.placement.view import ClusterView, InvalidView

__all__ = ["ClusterView", "InvalidPlacementConfig", "InvalidView", "PlacementConfig", "PlacementRequest",
           "Tier", "mutate", "rank_nodes", "terms_for"]
