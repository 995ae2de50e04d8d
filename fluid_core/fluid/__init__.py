"""Fluid's Python SDK (fluid-pysdk) names, served by this project.

A notebook written for Fluid's SDK runs with one import changed::

    from fluid_core.fluid import FluidClient, ClientConfig, constants, models

``ClientConfig()`` works on the local cluster (one runs or is started by
``bind_runtime``); a ``kube_config_file``/``kube_context`` (or ``backend=KubeClient``)
points it at Kubernetes, where the operator runs the flows.
"""

from fluid_core.fluid import constants, models
from fluid_core.fluid.client import ClientConfig, FluidClient, FluidDataset, RuntimeShapeWarning
from fluid_core.fluid.dataflow import FlowHandle, FluidDataFlow
from fluid_core.fluid.processors import create_processor, make_processor_from_func
from fluid_core.sdk import FlowFailed

__all__ = ["ClientConfig", "FlowFailed", "FlowHandle", "FluidClient", "FluidDataFlow", "FluidDataset", "constants",
           "RuntimeShapeWarning", "create_processor", "make_processor_from_func", "models"]
