"""``VineyardRuntime``: the etcd master, the vineyardd workers and the client bridge."""

from __future__ import annotations

import os
from enum import Enum
from typing import Literal

from pydantic import Field, model_validator

from fluid_core.models.base import (
    Condition,
    CrdInfo,
    Model,
    Passthrough,
    Quantity,
    Resource,
    StatusModel,
    not_applied,
)
from fluid_core.models.scheduling import PodMetadata
from vineyard_runtime.quantity import parse_quantity
from vineyard_runtime.spec import ETCD_CLIENT_PORT, ETCD_PEER_PORT, METRICS_PORT, RPC_PORT

DEFAULT_IMAGE = "ghcr.io/fluid-vineyard/fluid-vineyard"
DEFAULT_TAG = "0.1.0"
#: The project image every role runs when a resource names none (the etcd master, the
#: workers, the bridge, the operations' Jobs): the chart sets it to the operator's own.
IMAGE_ENV = "FLUIDV_IMAGE"


def project_image() -> tuple[str, str]:
    """``(repository, tag)`` of the project image: ``$FLUIDV_IMAGE``, else this release's."""
    configured = os.environ.get(IMAGE_ENV, "").strip()
    if not configured:
        return DEFAULT_IMAGE, DEFAULT_TAG
    repository, _, tag = configured.rpartition(":")
    if not repository or "/" in tag:  # no tag given (a registry port is not a tag)
        return configured, "latest"
    return repository, tag


def project_image_ref() -> str:
    """The project image as one reference, ``repository:tag``."""
    return ":".join(project_image())


class RuntimePhase(str, Enum):
    NONE = ""
    NOT_READY = "NotReady"
    PARTIAL_READY = "PartialReady"
    READY = "Ready"


class PullPolicy(str, Enum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class Endpoint(Model):
    """An external etcd used instead of the runtime's own master."""

    uri: str = Field(pattern=r"^https?://[^\s]+$")
    options: dict[str, str] = not_applied("options of the external etcd", dict)
    encrypt_options: list[Passthrough] = not_applied("credentials of the external etcd", list)


class Persistence(Model):
    """Keep etcd's data on a PersistentVolumeClaim instead of an emptyDir."""

    enabled: bool = False
    size: Quantity = "1Gi"
    storage_class_name: str | None = None


class MasterPorts(Model):
    client: int = Field(ETCD_CLIENT_PORT, ge=1, le=65535)
    peer: int = Field(ETCD_PEER_PORT, ge=1, le=65535)


class Master(Model):
    replicas: int = Field(1, ge=1, le=7)
    image: str = Field(default_factory=lambda: project_image()[0])  # it has etcd, as Fluid's vineyardd image
    image_tag: str = Field(default_factory=lambda: project_image()[1])
    image_pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT
    resources: Passthrough | None = None
    endpoint: Endpoint | None = None
    persistence: Persistence = Field(default_factory=Persistence)
    ports: MasterPorts = Field(default_factory=MasterPorts)
    node_selector: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = not_applied("environment variables of etcd", dict)
    options: dict[str, str] = not_applied("etcd options", dict)
    network_mode: str | None = not_applied("a network mode for etcd (it runs in the pod network)")
    pod_metadata: PodMetadata | None = not_applied("labels and annotations of the master's pods")
    volume_mounts: list[Passthrough] = not_applied("volume mounts of the master", list)

    @model_validator(mode="after")
    def _odd_members(self) -> "Master":
        if self.replicas % 2 == 0:
            raise ValueError(f"replicas {self.replicas}: an etcd cluster needs an odd number of members")
        return self


class WorkerPorts(Model):
    rpc: int = Field(RPC_PORT, ge=1, le=65535)
    metrics: int = Field(METRICS_PORT, ge=1, le=65535)
    #: Fluid's name of the metrics port; when given, it is the metrics port.
    exporter: int | None = Field(None, ge=1, le=65535)

    @model_validator(mode="after")
    def _exporter_is_metrics(self) -> "WorkerPorts":
        if self.exporter is not None:
            self.metrics = self.exporter
        return self


class NetworkMode(str, Enum):
    HOST = "HostNetwork"
    CONTAINER = "ContainerNetwork"


class Component(Model):
    """What the worker and the bridge have in common: image, resources, env, options."""

    image: str = Field(default_factory=lambda: project_image()[0])
    image_tag: str = Field(default_factory=lambda: project_image()[1])
    image_pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT
    resources: Passthrough | None = None
    env: dict[str, str] = Field(default_factory=dict)
    options: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)


class Worker(Component):
    ports: WorkerPorts = Field(default_factory=WorkerPorts)
    network_mode: NetworkMode = NetworkMode.CONTAINER
    replicas: int | None = not_applied("worker replicas here (spec.replicas sets them)")
    pod_metadata: PodMetadata | None = not_applied("labels and annotations of the workers' pods")
    volume_mounts: list[Passthrough] = not_applied("volume mounts of the workers", list)


class CleanPolicy(str, Enum):
    ON_DEMAND = "OnDemand"
    ON_RUNTIME_DELETED = "OnRuntimeDeleted"


class Fuse(Component):
    """The client bridge that publishes vineyard-config.yaml on each node."""

    clean_policy: CleanPolicy = CleanPolicy.ON_RUNTIME_DELETED
    network_mode: str | None = not_applied("a network mode for the bridge")
    pod_metadata: PodMetadata | None = not_applied("labels and annotations of the bridge's pods")


class MediumType(str, Enum):
    MEM = "MEM"
    SSD = "SSD"
    HDD = "HDD"


class Level(Model):
    mediumtype: MediumType = Field(alias="mediumtype")
    quota: Quantity | None = None
    path: str | None = None
    high: str | None = Field(None, pattern=r"^(0(\.[0-9]+)?|1(\.0+)?)$")
    low: str | None = Field(None, pattern=r"^(0(\.[0-9]+)?|1(\.0+)?)$")
    volume_type: Literal["hostPath", "emptyDir"] | None = None
    quota_list: str | None = not_applied("per-path quotas (one quota per level)")
    volume_source: Passthrough | None = not_applied("a volume source for the level")

    @model_validator(mode="after")
    def _watermarks(self) -> "Level":
        if self.high is not None and self.low is not None and not float(self.low) < float(self.high):
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.mediumtype != MediumType.MEM and not self.path:
            raise ValueError(f"a {self.mediumtype} level needs a path to spill to")
        return self


class TieredStore(Model):
    levels: list[Level] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_memory_level(self) -> "TieredStore":
        memory = [level for level in self.levels if level.mediumtype == MediumType.MEM]
        if len(memory) > 1:
            raise ValueError("at most one MEM level")
        return self


class VineyardRuntimeSpec(Model):
    replicas: int = Field(1, ge=1, le=1000)
    master: Master = Field(default_factory=Master)
    worker: Worker = Field(default_factory=Worker)
    fuse: Fuse = Field(default_factory=Fuse)
    tieredstore: TieredStore = Field(default_factory=TieredStore, alias="tieredstore")
    disable_prometheus: bool | None = not_applied("turning the metrics exporter off")
    pod_metadata: PodMetadata | None = not_applied("labels and annotations of the runtime's pods")
    volumes: list[Passthrough] = not_applied("extra volumes of the runtime's pods", list)

    def memory_quota(self) -> str:
        """The MEM level's quota (vineyardd --size), 4Gi when none is given."""
        for level in self.tieredstore.levels:
            if level.mediumtype == MediumType.MEM and level.quota:
                return level.quota
        return "4Gi"

    def spill_level(self) -> Level | None:
        for level in self.tieredstore.levels:
            if level.mediumtype != MediumType.MEM:
                return level
        return None

    @model_validator(mode="after")
    def _memory_size(self) -> "VineyardRuntimeSpec":
        if parse_quantity(self.memory_quota()) < 16 * 2**20:
            raise ValueError(f"MEM quota {self.memory_quota()} is below the 16Mi a worker needs")
        return self


class VineyardRuntimeStatus(StatusModel):
    master_phase: RuntimePhase = RuntimePhase.NONE
    worker_phase: RuntimePhase = RuntimePhase.NONE
    fuse_phase: RuntimePhase = RuntimePhase.NONE
    master_number_ready: int = 0
    desired_master_number_scheduled: int = 0
    worker_number_ready: int = 0
    desired_worker_number_scheduled: int = 0
    fuse_number_ready: int = 0
    desired_fuse_number_scheduled: int = 0
    current_master_number_scheduled: int = 0
    current_worker_number_scheduled: int = 0
    current_fuse_number_scheduled: int = 0
    #: the ConfigMap holding the runtime's settings (Fluid: its Helm values)
    value_file: str = ""
    #: label selector of the worker pods, for the ``scale`` subresource
    selector: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    cache_states: dict[str, str] = Field(default_factory=dict)
    master_persistence: str | None = None
    #: digest of the objects last applied, and when: unchanged objects are not re-sent
    applied_digest: str | None = None
    applied_at: str | None = None
    #: the uid of the etcd master's pod the workers registered with (a new one restarts them)
    master_pod_uid: str | None = Field(default=None, alias="masterPodUID")


class VineyardRuntime(Resource):
    """Fluid's VineyardRuntime (short name v6d)."""

    CRD = CrdInfo(
        plural="vineyardruntimes",
        short_names=("v6d",),
        columns=(  # Fluid's, in Fluid's order
            ("Ready Masters", "integer", ".status.masterNumberReady", 10),
            ("Desired Masters", "integer", ".status.desiredMasterNumberScheduled", 10),
            ("Master Phase", "string", ".status.masterPhase", 0),
            ("Ready Workers", "integer", ".status.workerNumberReady", 10),
            ("Desired Workers", "integer", ".status.desiredWorkerNumberScheduled", 10),
            ("Worker Phase", "string", ".status.workerPhase", 0),
            ("Ready Fuses", "integer", ".status.fuseNumberReady", 10),
            ("Desired Fuses", "integer", ".status.desiredFuseNumberScheduled", 10),
            ("Fuse Phase", "string", ".status.fusePhase", 0),
            ("API Gateway", "string", ".status.apiGateway.endpoint", 10),
            ("Age", "date", ".metadata.creationTimestamp", 0),
        ),
        scale={"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.currentWorkerNumberScheduled",
               "labelSelectorPath": ".status.selector"},
    )

    kind: Literal["VineyardRuntime"] = "VineyardRuntime"
    spec: VineyardRuntimeSpec = Field(default_factory=VineyardRuntimeSpec)
    status: VineyardRuntimeStatus | None = None
