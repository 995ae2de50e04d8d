"""Who may carry a runtime's peer label (``fluid.io/vineyard-peer=<runtime>``), which its
NetworkPolicy admits to etcd and vineyardd's RPC port: the runtime's own pods, made by
the StatefulSet and DaemonSet controllers from its workloads, and pods that mount its
dataset (the placement webhook labels them). Any other pod asking for it is refused,
so that nobody reaches a runtime's metadata by labelling a pod of their own."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fluid_core.placement.terms import claims_of
from vineyard_runtime.naming import PEER_LABEL, runtime_workloads, safe_value

#: the users the controller manager creates a StatefulSet's or DaemonSet's pods as
CONTROLLERS = frozenset({
    "system:serviceaccount:kube-system:statefulset-controller",
    "system:serviceaccount:kube-system:daemon-set-controller",
    "system:kube-controller-manager",
})


def peer_problem(pod: Mapping[str, Any], username: str, runtimes: Iterable[str]) -> str | None:
    """Why ``pod``, created or changed by ``username``, may not carry the peer label it
    carries (None: it carries none, or may). ``runtimes``: the runtimes of its namespace."""
    value = ((pod.get("metadata") or {}).get("labels") or {}).get(PEER_LABEL)
    if value is None:
        return None
    if any(safe_value(claim) == value for claim in claims_of(pod)):
        return None  # it mounts the runtime's dataset: a consumer
    if username in CONTROLLERS:
        owners = {(o.get("kind"), o.get("name")) for o in (pod.get("metadata") or {}).get("ownerReferences") or []
                  if o.get("controller")}
        for runtime in runtimes:
            if safe_value(runtime) == value and owners & {(k, n) for n, k in runtime_workloads(runtime).items()}:
                return None  # made by the controller from the runtime's own workload
    return (f"label {PEER_LABEL}={value} admits a pod to the etcd and RPC ports of runtime {value!r}; only its own "
            f"pods and pods that mount its dataset (a PersistentVolumeClaim named {value!r}) may carry it")


__all__ = ["CONTROLLERS", "peer_problem"]
