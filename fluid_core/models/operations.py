"""Data operations: DataLoad, DataProcess, DataMigrate, DataBackup, chained by runAfter."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema, field_validator, model_validator

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
    not_applied_locally,
)
from fluid_core.models.scheduling import PodMetadata, PodOptions


class OperationPhase(str, Enum):
    NONE = ""
    PENDING = "Pending"
    EXECUTING = "Executing"
    COMPLETE = "Complete"
    FAILED = "Failed"


class Policy(str, Enum):
    ONCE = "Once"
    CRON = "Cron"
    ON_EVENT = "OnEvent"


class AffinityPolicy(str, Enum):
    REQUIRE = "Require"
    PREFER = "Prefer"


class OperationKind(str, Enum):
    DATA_LOAD = "DataLoad"
    DATA_PROCESS = "DataProcess"
    DATA_MIGRATE = "DataMigrate"
    DATA_BACKUP = "DataBackup"


class Prefer(Model):
    name: str = "kubernetes.io/hostname"
    weight: int = Field(100, ge=1, le=100)


class Require(Model):
    name: str = "kubernetes.io/hostname"


class OperationRef(Model):
    """Another data operation, by kind and name."""

    api_version: str | None = None
    kind: OperationKind
    name: Name1035
    namespace: Namespace | None = None


class AffinityStrategy(Model):
    policy: AffinityPolicy = AffinityPolicy.PREFER
    prefers: list[Prefer] = Field(default_factory=list)
    requires: list[Require] = Field(default_factory=list)
    #: The operation whose node to follow (default: the one in ``runAfter``).
    depend_on: OperationRef | None = None


class RunAfter(OperationRef):
    """The operation this one follows in a DataFlow."""

    affinity_strategy: AffinityStrategy | None = None


class DatasetRef(Model):
    name: Name1035
    namespace: Namespace | None = None


class OnEvent(Model):
    """Run when an object whose name matches ``objectPattern`` is created or replaced."""

    object_pattern: str = Field(min_length=1)
    debounce_seconds: float = Field(1.0, ge=0)


class OperationSpec(Model):
    """Fields every data operation has."""

    dataset: DatasetRef
    run_after: RunAfter | None = None
    ttl_seconds_after_finished: int | None = Field(None, ge=0)


class ScheduledSpec(OperationSpec):
    policy: Policy = Policy.ONCE
    schedule: str | None = None
    on_event: OnEvent | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from croniter import croniter  # noqa: PLC0415

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '*/5 * * * *')")
        return value

    @model_validator(mode="after")
    def _policy_fields(self) -> "ScheduledSpec":
        if self.policy == Policy.CRON and not self.schedule:
            raise ValueError("policy Cron needs a schedule (a cron expression such as '0 * * * *')")
        if self.policy == Policy.ON_EVENT and self.on_event is None:
            raise ValueError("policy OnEvent needs onEvent.objectPattern")
        return self


class OperationStatus(StatusModel):
    phase: OperationPhase = OperationPhase.NONE
    duration: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    last_schedule_time: str | None = None
    last_successful_time: str | None = None
    waiting_for: dict[str, bool] = Field(default_factory=dict)
    node_affinity: Passthrough | None = None
    node: str | None = None
    infos: dict[str, str] = Field(default_factory=dict)


def _op_columns(dataset: str | None) -> tuple[tuple[str, str, str, int], ...]:
    """Fluid's printer columns of an operation, then this project's (at priority 1)."""
    head = (("Dataset", "string", dataset, 0),) if dataset else ()
    return head + (("Phase", "string", ".status.phase", 0),
                   ("Age", "date", ".metadata.creationTimestamp", 0),
                   ("Duration", "string", ".status.duration", 0),
                   ("Node", "string", ".status.node", 1))


class LoadTarget(Model):
    path: str = Field(min_length=1)
    #: Nodes that keep a copy of the path's objects (placement picks them; 1 when unset).
    replicas: int | None = Field(None, ge=1, le=64)
    #: Extensions: the key to load into, and the file format.
    name: str | None = None
    format: Literal["parquet", "csv", "arrow", "feather", "npy", "backup"] | None = None


class DataLoadSpec(ScheduledSpec, PodOptions):
    #: Paths to load; empty means the whole dataset, as in Fluid.
    target: list[LoadTarget] = Field(default_factory=list)
    load_metadata: bool = False
    options: dict[str, str] = Field(default_factory=dict)

    def copies(self) -> int:
        """How many nodes keep the loaded objects: the largest ``target[].replicas``."""
        return max([t.replicas or 1 for t in self.target] + [1])


class DataLoad(Resource):
    CRD = CrdInfo(plural="dataloads", short_names=("load",), columns=_op_columns(".spec.dataset.name"))
    kind: Literal["DataLoad"] = "DataLoad"
    spec: DataLoadSpec
    status: OperationStatus | None = None


class ExternalStorage(Model):
    uri: str = Field(min_length=1)
    options: dict[str, str] = Field(default_factory=dict)
    encrypt_options: list[Passthrough] = not_applied("encrypted storage options (secrets)", list)


class DatasetPath(Model):
    name: Name1035
    namespace: Namespace | None = None
    path: str = "/"


class MigrateEnd(Model):
    dataset: DatasetPath | None = None
    external_storage: ExternalStorage | None = None

    @model_validator(mode="after")
    def _one_side(self) -> "MigrateEnd":
        if (self.dataset is None) == (self.external_storage is None):
            raise ValueError("give exactly one of dataset or externalStorage")
        return self


class DataMigrateSpec(ScheduledSpec, PodOptions):
    """Fluid's shape: the dataset is the ``from`` or the ``to`` side. ``spec.dataset``
    (this project's older shape) may be given too; it must name the same dataset."""

    dataset: DatasetRef | None = None  # type: ignore[assignment]
    from_: MigrateEnd = Field(alias="from")
    to: MigrateEnd
    parallelism: int = Field(1, ge=1, le=64)
    parallel_options: dict[str, str] = not_applied("parallel migration options (one pod migrates, with parallelism threads)", dict)
    options: dict[str, str] = Field(default_factory=dict)
    block: bool | None = not_applied("a blocking migration")
    runtime_type: str | None = not_applied("a runtime type (the runtime is Vineyard)")
    image: str | None = not_applied_locally("a migration image")
    image_tag: str | None = not_applied_locally("a migration image tag")
    image_pull_policy: str | None = not_applied_locally("an image pull policy")

    @model_validator(mode="after")
    def _one_dataset(self) -> "DataMigrateSpec":
        if (self.from_.dataset is None) == (self.to.dataset is None):
            raise ValueError("a migration goes between the dataset and external storage: "
                             "exactly one of from/to must be a dataset")
        side = self.from_.dataset or self.to.dataset
        assert side is not None
        if self.dataset is None:
            self.dataset = DatasetRef(name=side.name, namespace=side.namespace)
        elif self.dataset.name != side.name or None not in (self.dataset.namespace, side.namespace) and \
                self.dataset.namespace != side.namespace:
            raise ValueError(f"spec.dataset ({self.dataset.name}) is not the dataset in from/to ({side.name})")
        return self


class DataMigrate(Resource):
    CRD = CrdInfo(plural="datamigrates", short_names=("migrate",), columns=_op_columns(None))
    kind: Literal["DataMigrate"] = "DataMigrate"
    spec: DataMigrateSpec
    status: OperationStatus | None = None


class RunAs(Model):
    uid: int
    gid: int
    user: str
    group: str


class DataBackupSpec(OperationSpec):
    """Fluid's shape: ``dataset`` is the name of a dataset in the backup's namespace
    (the object form of the other operations is accepted too, outside Kubernetes)."""

    dataset: Annotated[DatasetRef, WithJsonSchema({"type": "string", "minLength": 1})]
    backup_path: str = Field(min_length=1)
    run_as: RunAs | None = not_applied_locally("a user and group to write the backup as")

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_by_name(cls, value: object) -> object:
        return {"name": value} if isinstance(value, str) else value  # Fluid's shape: a name


class DataBackup(Resource):
    CRD = CrdInfo(plural="databackups", short_names=("backup",), columns=(  # Fluid's order
        ("Dataset", "string", ".spec.dataset", 0), ("Phase", "string", ".status.phase", 0),
        ("Path", "string", ".status.infos.BackupLocationPath", 0),
        ("NodeName", "string", ".status.infos.BackupLocationNodeName", 0),
        ("Duration", "string", ".status.duration", 0), ("Age", "date", ".metadata.creationTimestamp", 0),
        ("Node", "string", ".status.node", 1)))
    kind: Literal["DataBackup"] = "DataBackup"
    spec: DataBackupSpec
    status: OperationStatus | None = None


class ProcessDataset(DatasetRef):
    #: Where the dataset's volume appears in the pod (``/data`` when not given).
    mount_path: str | None = not_applied_locally("a mount path (local steps reach the dataset by socket)")
    sub_path: str | None = not_applied_locally("a sub path of the dataset's volume")


class Script(Model):
    """Fluid's script processor: ``source`` is written to a file, run as ``command``
    (or the image's entrypoint) followed by that file."""

    image: str | None = not_applied_locally("an image (local scripts run on this machine)")
    image_tag: str | None = not_applied_locally("an image tag")
    image_pull_policy: str | None = not_applied_locally("an image pull policy")
    command: list[str] = Field(default_factory=list)
    source: str = ""
    env: list[Passthrough] = Field(default_factory=list)
    volume_mounts: list[Passthrough] = not_applied_locally("volume mounts", list)
    volumes: list[Passthrough] = not_applied_locally("volumes", list)
    resources: Passthrough | None = not_applied_locally("resource requests and limits")
    restart_policy: str | None = not_applied_locally("a restart policy")

    @model_validator(mode="after")
    def _something_to_run(self) -> "Script":
        if not self.command and not self.source:
            raise ValueError("give script.source (run by script.command, or by the image's entrypoint)")
        return self


class JobProcessor(Model):
    pod_spec: Passthrough


class Processor(Model):
    """A script (command + source), a Job's podSpec (Kubernetes), or a Python function
    ``module:function`` / ``path/to/file.py:function`` called with a step context."""

    script: Script | None = None
    job: JobProcessor | None = None
    function: str | None = Field(None, pattern=r"^[^:\s]+:[A-Za-z_][A-Za-z0-9_.]*$")
    #: Parameters handed to the function as ``ctx.params``.
    params: dict[str, str] = Field(default_factory=dict)
    pod_metadata: PodMetadata | None = not_applied_locally("pod labels and annotations")
    service_account_name: str | None = not_applied_locally("a service account")

    @model_validator(mode="after")
    def _exactly_one(self) -> "Processor":
        if sum(x is not None for x in (self.script, self.job, self.function)) != 1:
            raise ValueError("give exactly one of processor.script, processor.job or processor.function")
        return self


class DataProcessSpec(ScheduledSpec):
    dataset: ProcessDataset
    processor: Processor
    #: Objects (keys in the dataset) the step reads: placement puts it where they are.
    inputs: list[str] = Field(default_factory=list)
    #: Objects the flow keeps: TTL clean-up removes the run's other objects.
    outputs: list[str] = Field(default_factory=list)


class DataProcess(Resource):
    CRD = CrdInfo(plural="dataprocesses", columns=_op_columns(".spec.dataset.name"))
    kind: Literal["DataProcess"] = "DataProcess"
    spec: DataProcessSpec
    status: OperationStatus | None = None
