"""Data operations and DataFlow on the local cluster: formats, step context, runner."""

from fluid_core.flow.context import StepContext
from fluid_core.flow.ops import OperationFailed
from fluid_core.flow.runner import LocalRunner, OperationRun
from fluid_core.flow.validate import FlowInvalid

__all__ = ["FlowInvalid", "LocalRunner", "OperationFailed", "OperationRun", "StepContext"]
