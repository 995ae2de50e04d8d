"""``Dataset``: a named set of data cached by a runtime of the same name."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field

from fluid_core.models.base import (
    Condition,
    CrdInfo,
    Model,
    Name1035,
    Namespace,
    Passthrough,
    Resource,
    StatusModel,
    not_applied,
)


class AccessMode(str, Enum):
    READ_ONLY_MANY = "ReadOnlyMany"
    READ_WRITE_MANY = "ReadWriteMany"
    READ_WRITE_ONCE = "ReadWriteOnce"
    READ_WRITE_ONCE_POD = "ReadWriteOncePod"


class Placement(str, Enum):
    EXCLUSIVE = "Exclusive"
    SHARED = "Shared"


class DatasetPhase(str, Enum):
    NONE = ""
    PENDING = "Pending"
    NOT_BOUND = "NotBound"
    BOUND = "Bound"
    FAILED = "Failed"
    UPDATING = "Updating"


class Mount(Model):
    """Where data comes from (usually empty for Vineyard datasets)."""

    mount_point: str
    name: Name1035 | None = None
    path: str | None = None
    options: dict[str, str] = Field(default_factory=dict)
    read_only: bool = False
    shared: bool = False
    encrypt_options: list[Passthrough] = not_applied("credentials of the mount (secrets)", list)


class DatasetNodeAffinity(Model):
    required: Passthrough | None = None


class RuntimeRef(Model):
    name: Name1035
    namespace: Namespace | None = None
    category: Literal["Accelerate"] = "Accelerate"
    type: Literal["vineyard"] = "vineyard"
    master_replicas: int | None = not_applied("a number of master replicas here (the runtime sets them)")


class DataRestoreLocation(Model):
    """Fluid's backup to restore when the dataset binds: ``pvc://<claim>/<subpath>``,
    ``local:///<dir>`` on ``nodeName``, or (this project) any URI or local path."""

    path: str = Field(min_length=1)
    node_name: str | None = None


class DatasetSpec(Model):
    mounts: list[Mount] = Field(default_factory=list)
    node_affinity: DatasetNodeAffinity | None = None
    tolerations: list[Passthrough] = Field(default_factory=list)
    access_modes: list[AccessMode] = Field(default_factory=lambda: [AccessMode.READ_ONLY_MANY])
    placement: Placement = Placement.EXCLUSIVE
    runtimes: list[RuntimeRef] = Field(default_factory=list)
    owner: Passthrough | None = None
    #: A backup (DataBackup's) restored into the dataset when it binds, if it is empty.
    data_restore_location: DataRestoreLocation | None = None
    shared_options: dict[str, str] = not_applied("options shared by all mounts", dict)
    shared_encrypt_options: list[Passthrough] = not_applied("credentials shared by all mounts", list)


class DatasetStatus(StatusModel):
    phase: DatasetPhase = DatasetPhase.NONE
    runtimes: list[RuntimeRef] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    cache_states: dict[str, str] = Field(default_factory=dict)
    operation_ref: dict[str, str] = Field(default_factory=dict)
    mount_point: str | None = None


class Dataset(Resource):
    """Fluid's Dataset, bound to the VineyardRuntime of the same namespace and name."""

    CRD = CrdInfo(
        plural="datasets",
        short_names=("dataset",),
        columns=(  # Fluid's, in Fluid's order
            ("Ufs Total Size", "string", ".status.ufsTotal", 0),
            ("Cached", "string", ".status.cacheStates.cached", 0),
            ("Cache Capacity", "string", ".status.cacheStates.cacheCapacity", 0),
            ("Cached Percentage", "string", ".status.cacheStates.cachedPercentage", 0),
            ("Phase", "string", ".status.phase", 0),
            ("HCFS URL", "string", ".status.hcfs.endpoint", 10),
            ("TOTAL FILES", "string", ".status.fileNum", 11),
            ("CACHE HIT RATIO", "string", ".status.cacheStates.cacheHitRatio", 10),
            ("Age", "date", ".metadata.creationTimestamp", 0),
        ),
    )

    kind: Literal["Dataset"] = "Dataset"
    spec: DatasetSpec = Field(default_factory=DatasetSpec)
    status: DatasetStatus | None = None
