"""Fluid's SDK constants (the ones its flows use)."""

from fluid_core.models.base import API_VERSION, GROUP, VERSION

DEFAULT_API_REQUEST_TIMEOUT = 300
DEFAULT_POLL_TIMEOUT = 600
DEFAULT_POLL_INTERVAL = 3
DEFAULT_DATAFLOW_TIME_TO_LIVE = 86400 * 3

DATASET_KIND = "Dataset"
VINEYARD_RUNTIME_KIND = "VineyardRuntime"
DATA_LOAD_KIND = "DataLoad"
DATA_MIGRATE_KIND = "DataMigrate"
DATA_PROCESS_KIND = "DataProcess"
DATA_BACKUP_KIND = "DataBackup"

DATA_MIGRATE_DIRECTION_FROM = "from"
DATA_MIGRATE_DIRECTION_TO = "to"

__all__ = [name for name in dir() if name.isupper()] + ["API_VERSION", "GROUP", "VERSION"]
