"""Placement settings: the locality tiers and their weights (a ConfigMap or a file)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluid_core.errors import FluidError

ZONE = "topology.kubernetes.io/zone"
REGION = "topology.kubernetes.io/region"
RACK = "topology.fluid.io/rack"
#: The node tier of a dataset: Fluid's per-dataset cache label on nodes.
NODE_TIER = "fluid.io/node"


class InvalidPlacementConfig(FluidError, ValueError):
    """Placement settings that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Tier:
    """Prefer nodes whose ``label`` value is one that cache nodes have, with ``weight``.
    ``label == NODE_TIER`` stands for the dataset's own cache label."""

    label: str
    weight: int


DEFAULT_TIERS = (Tier(NODE_TIER, 100), Tier(RACK, 75), Tier(ZONE, 50), Tier(REGION, 20))


@dataclass(frozen=True)
class PlacementConfig:
    """Dataset tiers (node, rack, zone, region by default) and object-locality weights."""

    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    object_weights: tuple[Tier, ...] = (Tier(NODE_TIER, 100), Tier(ZONE, 50), Tier(REGION, 20))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "PlacementConfig":
        """``{"tiers": [{"label": ..., "weight": ...}], "objectTiers": [...]}``; either optional."""
        data = dict(data or {})
        unknown = set(data) - {"tiers", "objectTiers"}
        if unknown:
            raise InvalidPlacementConfig(f"unknown placement settings {sorted(unknown)}; use tiers, objectTiers")
        tiers = _tiers(data.get("tiers"), "tiers") or DEFAULT_TIERS
        objects = _tiers(data.get("objectTiers"), "objectTiers") or cls.object_weights
        return cls(tiers=tiers, object_weights=objects)

    @classmethod
    def from_file(cls, path: str | Path) -> "PlacementConfig":
        """Settings from a YAML file (a ConfigMap key mounted as a file)."""
        import yaml  # noqa: PLC0415

        try:
            return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})
        except OSError as exc:
            raise InvalidPlacementConfig(f"cannot read placement settings {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise InvalidPlacementConfig(f"{path} is not YAML: {exc}") from None


def _tiers(raw: Any, where: str) -> tuple[Tier, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidPlacementConfig(f"{where}: a list of {{label, weight}}")
    tiers = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or not isinstance(item.get("label"), str):
            raise InvalidPlacementConfig(f"{where}[{i}].label: a node label key is required")
        weight = item.get("weight")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= 100:
            raise InvalidPlacementConfig(f"{where}[{i}].weight: an integer from 1 to 100, got {weight!r}")
        tiers.append(Tier(item["label"], weight))
    return tuple(tiers)
