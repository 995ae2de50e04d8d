"""Data operations: DataLoad, DataProcess, DataMigrate, DataBackup, chained by runAfter."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from fluid_core.models.base import Condition, CrdInfo, Model, Name1035, Namespace, Passthrough, Resource


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


class AffinityStrategy(Model):
    policy: AffinityPolicy = AffinityPolicy.PREFER
    prefers: list[Prefer] = Field(default_factory=list)
    requires: list[Require] = Field(default_factory=list)


class RunAfter(Model):
    """The operation this one follows in a DataFlow."""

    kind: OperationKind
    name: Name1035
    namespace: Namespace | None = None
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


class OperationStatus(Model):
    phase: OperationPhase = OperationPhase.NONE
    duration: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    last_schedule_time: str | None = None
    last_successful_time: str | None = None
    waiting_for: dict[str, bool] = Field(default_factory=dict)
    node_affinity: Passthrough | None = None
    node: str | None = None
    infos: dict[str, str] = Field(default_factory=dict)


_OP_COLUMNS = (
    ("Dataset", "string", ".spec.dataset.name", 0),
    ("Phase", "string", ".status.phase", 0),
    ("Node", "string", ".status.node", 1),
    ("Duration", "string", ".status.duration", 0),
    ("Age", "date", ".metadata.creationTimestamp", 0),
)


class LoadTarget(Model):
    path: str = Field(min_length=1)
    name: str | None = None
    format: Literal["parquet", "csv", "arrow", "feather", "npy", "backup"] | None = None


class DataLoadSpec(ScheduledSpec):
    target: list[LoadTarget] = Field(min_length=1)
    load_metadata: bool = False
    options: dict[str, str] = Field(default_factory=dict)


class DataLoad(Resource):
    CRD = CrdInfo(plural="dataloads", columns=_OP_COLUMNS)
    kind: Literal["DataLoad"] = "DataLoad"
    spec: DataLoadSpec
    status: OperationStatus | None = None


class ExternalStorage(Model):
    uri: str = Field(min_length=1)
    options: dict[str, str] = Field(default_factory=dict)


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


class DataMigrateSpec(ScheduledSpec):
    from_: MigrateEnd = Field(alias="from")
    to: MigrateEnd
    parallelism: int = Field(1, ge=1, le=64)

    @model_validator(mode="after")
    def _one_dataset(self) -> "DataMigrateSpec":
        if (self.from_.dataset is None) == (self.to.dataset is None):
            raise ValueError("a migration goes between the dataset and external storage: "
                             "exactly one of from/to must be a dataset")
        return self


class DataMigrate(Resource):
    CRD = CrdInfo(plural="datamigrates", columns=_OP_COLUMNS)
    kind: Literal["DataMigrate"] = "DataMigrate"
    spec: DataMigrateSpec
    status: OperationStatus | None = None


class DataBackupSpec(OperationSpec):
    backup_path: str = Field(min_length=1)


class DataBackup(Resource):
    CRD = CrdInfo(plural="databackups", columns=_OP_COLUMNS)
    kind: Literal["DataBackup"] = "DataBackup"
    spec: DataBackupSpec
    status: OperationStatus | None = None


class ProcessDataset(DatasetRef):
    mount_path: str = "/data"


class Script(Model):
    image: str | None = None
    image_tag: str | None = None
    command: list[str] = Field(min_length=1)
    source: str = ""
    env: list[Passthrough] = Field(default_factory=list)
    volume_mounts: list[Passthrough] = Field(default_factory=list)


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
    CRD = CrdInfo(plural="dataprocesses", columns=_OP_COLUMNS)
    kind: Literal["DataProcess"] = "DataProcess"
    spec: DataProcessSpec
    status: OperationStatus | None = None
