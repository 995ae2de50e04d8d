"""Where and how an operation's pod runs: Fluid's scheduling fields, shared by the
operations that have them (DataLoad, DataMigrate, a DataProcess's processor)."""

from __future__ import annotations

from pydantic import Field

from fluid_core.models.base import Model, Passthrough, not_applied_locally


class PodMetadata(Model):
    """Labels and annotations put on the operation's pods."""

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Toleration(Model):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


class PodOptions(Model):
    """Fluid's pod fields of an operation: they go into its Job's pod on Kubernetes."""

    affinity: Passthrough | None = not_applied_locally("pod affinity")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = not_applied_locally("tolerations", list)
    scheduler_name: str | None = not_applied_locally("a scheduler name")
    pod_metadata: PodMetadata | None = not_applied_locally("pod labels and annotations")
    resources: Passthrough | None = not_applied_locally("resource requests and limits")
