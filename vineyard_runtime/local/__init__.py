"""The embedded local cluster: one etcd and N vineyardd "nodes" on this machine."""

from vineyard_runtime.local.cluster import LocalCluster
from vineyard_runtime.local.layout import default_workdir
from vineyard_runtime.local.state import ClusterState, EtcdState, NodeState

__all__ = ["ClusterState", "EtcdState", "LocalCluster", "NodeState", "default_workdir"]
