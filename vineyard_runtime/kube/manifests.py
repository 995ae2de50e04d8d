"""The Kubernetes objects of one Vineyard runtime, built from the same daemon description
as the local cluster (``vineyard_runtime.daemons``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vineyard_runtime.daemons import etcd_command, vineyardd_command
from vineyard_runtime.naming import BRIDGE, MASTER, PEER_LABEL, WORKER, derived_name, fuse_node_label, safe_value
from vineyard_runtime.quantity import format_bytes, parse_quantity
from vineyard_runtime.spec import (
    BLOB_PORT,
    BRIDGE_METRICS_PORT,
    DEFAULT_ETCD_PREFIX,
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    METRICS_PORT,
    RPC_PORT,
    SPILL_LOWER_RATE,
    SPILL_UPPER_RATE,
    EtcdSpec,
    WorkerSpec,
)

SOCKET_DIR = "/var/run/vineyard"
SOCKET = f"{SOCKET_DIR}/vineyard-worker.sock"
ETCD_DATA = "/var/lib/etcd"
HOST_ROOT = "/runtime-mnt/vineyard"
#: Memory a worker needs above its shared-memory size.
WORKER_OVERHEAD = 500 * 2**20
MANAGED_BY = "fluid-vineyard"
#: The key of the blob token in its Secret (made by the operator, one per runtime).
BLOB_TOKEN_KEY = "token"


@dataclass(frozen=True)
class Image:
    repository: str
    tag: str
    pull_policy: str = "IfNotPresent"

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


#: every container of a runtime: no privilege to gain, no capability, the runtime's
#: seccomp profile (vineyardd and etcd need none of them; the user is the image's)
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
#: the worker and the bridge share the node's runtime folder (a hostPath the kubelet makes,
#: owned by root, mode 0755): they run as root there, still without any capability, so
#: they own what they make in it (vineyardd's socket is 0777 for every client's user)
NODE_FOLDER_SECURITY: dict[str, Any] = {**CONTAINER_SECURITY, "runAsUser": 0, "runAsGroup": 0,
                                        "runAsNonRoot": False}


@dataclass(frozen=True)
class KubeRuntime:
    """Everything the manifests depend on, in plain values (no API models)."""

    name: str
    namespace: str
    workers: int
    size: str
    worker_image: Image
    master_image: Image
    bridge_image: Image
    master_replicas: int = 1
    external_etcd: str | None = None
    etcd_persistence: bool = False
    etcd_volume_size: str = "1Gi"
    etcd_storage_class: str | None = None
    client_port: int = ETCD_CLIENT_PORT
    peer_port: int = ETCD_PEER_PORT
    rpc_port: int = RPC_PORT
    metrics_port: int = METRICS_PORT
    #: the bridge's metrics and /healthz (ready once it links a serving worker)
    bridge_metrics_port: int = BRIDGE_METRICS_PORT
    #: the bridge's blob server: readers on other nodes receive this node's blobs there
    blob_port: int = BLOB_PORT
    #: the bridge keeps the dataset's objects mounted as files (FUSE; its container is
    #: then privileged, and the mount propagates to the pods that mount the dataset)
    fuse_view: bool = False
    spill_path: str | None = None
    spill_lower_rate: float = SPILL_LOWER_RATE
    spill_upper_rate: float = SPILL_UPPER_RATE
    compression: bool = False
    reserve_memory: bool = False
    worker_env: dict[str, str] = field(default_factory=dict)
    worker_node_selector: dict[str, str] = field(default_factory=dict)
    bridge_env: dict[str, str] = field(default_factory=dict)
    bridge_options: dict[str, str] = field(default_factory=dict)
    master_resources: dict[str, Any] | None = None
    worker_resources: dict[str, Any] | None = None
    bridge_resources: dict[str, Any] | None = None
    host_network: bool = False
    access_modes: tuple[str, ...] = ("ReadOnlyMany",)
    owner: dict[str, Any] | None = None  # an ownerReference of the runtime object

    # -- names -----------------------------------------------------------------------

    # Fluid's names when they fit; a long runtime name keeps a hash of itself instead,
    # so that the StatefulSets' and DaemonSet's pods get valid labels and host names

    @property
    def master_name(self) -> str:
        return derived_name(self.name, MASTER)

    @property
    def worker_name(self) -> str:
        return derived_name(self.name, WORKER)

    @property
    def bridge_name(self) -> str:
        return derived_name(self.name, BRIDGE)

    @property
    def rpc_conf_name(self) -> str:
        return derived_name(self.name, "-rpc-conf")

    @property
    def blob_token_name(self) -> str:
        """The Secret holding the token every blob server asks of its readers."""
        return derived_name(self.name, "-blob-token")

    @property
    def pv_name(self) -> str:
        return f"{self.namespace}-{self.name}"

    @property
    def host_dir(self) -> str:
        """Directory on each node holding the worker's socket and the bridge's files."""
        return f"{HOST_ROOT}/{self.namespace}/{self.name}"

    @property
    def etcd_endpoint(self) -> str:
        if self.external_etcd:
            return self.external_etcd
        return f"http://{self.master_name}-0.{self.master_name}.{self.namespace}:{self.client_port}"

    def rpc_endpoints(self) -> list[str]:
        return [
            f"{self.worker_name}-{i}.{self.worker_name}.{self.namespace}:{self.rpc_port}"
            for i in range(self.workers)
        ]

    # -- daemon description ------------------------------------------------------------

    def worker_spec(self) -> WorkerSpec:
        """The worker description shared with the local cluster."""
        return WorkerSpec(
            size=self.size,
            socket=SOCKET,
            etcd_endpoint=self.etcd_endpoint,
            etcd_prefix=DEFAULT_ETCD_PREFIX,
            rpc_port=self.rpc_port,
            spill_path=self.spill_path,
            spill_lower_rate=self.spill_lower_rate,
            spill_upper_rate=self.spill_upper_rate,
            compression=self.compression,
            reserve_memory=self.reserve_memory,
        )


def labels(rt: KubeRuntime, component: str | None = None) -> dict[str, str]:
    """Labels of every object of ``rt`` (Fluid's plus the recommended ones)."""
    result = {
        "app.kubernetes.io/name": "vineyard",
        "app.kubernetes.io/instance": safe_value(rt.name),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "release": safe_value(rt.name),
        "fluid.io/dataset": safe_value(f"{rt.namespace}-{rt.name}"),
        "fluid.io/dataset-id": safe_value(f"{rt.namespace}-{rt.name}"),
    }
    if component:
        result["app.kubernetes.io/component"] = component
        result["role"] = f"vineyard-{component}"
    return result


def selector(rt: KubeRuntime, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/instance": safe_value(rt.name),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/name": "vineyard",
    }


def peer_labels(rt: KubeRuntime, component: str) -> dict[str, str]:
    """The labels of the runtime's pods: theirs, and the one its NetworkPolicy admits."""
    return {**labels(rt, component), PEER_LABEL: safe_value(rt.name)}


def _meta(rt: KubeRuntime, name: str, component: str | None, *, namespaced: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels(rt, component)}
    if namespaced:
        meta["namespace"] = rt.namespace
        if rt.owner:
            meta["ownerReferences"] = [dict(rt.owner)]
    return meta


def _env(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in sorted(values.items())]


def _headless_service(rt: KubeRuntime, name: str, component: str, ports: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(rt, name, component),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector(rt, component),
            "ports": [
                {"name": port_name, "port": port, "targetPort": port, "protocol": "TCP"}
                for port_name, port in ports.items()
            ],
        },
    }


# -- master ---------------------------------------------------------------------------

def master_objects(rt: KubeRuntime) -> list[dict[str, Any]]:
    """etcd StatefulSet and headless Service; nothing when an external etcd is used."""
    if rt.external_etcd:
        return []
    members = ",".join(
        f"{rt.master_name}-{i}=http://{rt.master_name}-{i}.{rt.master_name}.{rt.namespace}:{rt.peer_port}"
        for i in range(rt.master_replicas)
    )
    spec = EtcdSpec(
        name="$(POD_NAME)",
        data_dir=ETCD_DATA,
        client_url=f"http://$(POD_NAME).{rt.master_name}.{rt.namespace}:{rt.client_port}",
        peer_url=f"http://$(POD_NAME).{rt.master_name}.{rt.namespace}:{rt.peer_port}",
        # the pod's own address (and loopback), never every interface
        listen_client_url=f"http://$(POD_IP):{rt.client_port},http://127.0.0.1:{rt.client_port}",
        listen_peer_url=f"http://$(POD_IP):{rt.peer_port}",
        initial_cluster=members,
        # on an emptyDir the data lives no longer than the pod, which a sync to disk cannot
        # change (a container that restarts finds the page cache): no write waits for one
        no_fsync=not rt.etcd_persistence,
    )
    command = etcd_command(spec, binary="etcd")
    container: dict[str, Any] = {
        "name": "etcd",
        "securityContext": CONTAINER_SECURITY,
        "image": rt.master_image.ref,
        "imagePullPolicy": rt.master_image.pull_policy,
        "command": command.argv,
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [
            {"name": "client", "containerPort": rt.client_port, "protocol": "TCP"},
            {"name": "peer", "containerPort": rt.peer_port, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": rt.client_port},
            "periodSeconds": 5,
        },
        "volumeMounts": [{"name": "etcd-data", "mountPath": ETCD_DATA}],
    }
    if rt.master_resources:
        container["resources"] = rt.master_resources
    pod_spec: dict[str, Any] = {"containers": [container]}
    statefulset_spec: dict[str, Any] = {
        "serviceName": rt.master_name,
        "replicas": rt.master_replicas,
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": selector(rt, "master")},
        "template": {"metadata": {"labels": peer_labels(rt, "master")}, "spec": pod_spec},
    }
    if rt.etcd_persistence:
        claim: dict[str, Any] = {
            "metadata": {"name": "etcd-data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": rt.etcd_volume_size}},
            },
        }
        if rt.etcd_storage_class:
            claim["spec"]["storageClassName"] = rt.etcd_storage_class
        statefulset_spec["volumeClaimTemplates"] = [claim]
    else:
        pod_spec["volumes"] = [{"name": "etcd-data", "emptyDir": {}}]
    return [
        _headless_service(rt, rt.master_name, "master", {"client": rt.client_port, "peer": rt.peer_port}),
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta(rt, rt.master_name, "master"),
            "spec": statefulset_spec,
        },
    ]


# -- workers --------------------------------------------------------------------------

def worker_memory_limit(size: str) -> str:
    """Container memory limit of a worker: its shared memory plus 500Mi of overhead."""
    return format_bytes(parse_quantity(size) + WORKER_OVERHEAD)


def worker_objects(rt: KubeRuntime, replicas: int | None = None) -> list[dict[str, Any]]:
    """vineyardd StatefulSet (one per node) and its headless Service; ``replicas``: how
    many of ``rt.workers`` to run now (the operator starts them one after another)."""
    command = vineyardd_command(rt.worker_spec(), binary="vineyardd")
    env = [
        {"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "MY_HOST_NAME", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MY_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ] + _env({**command.env, **rt.worker_env})
    memory = worker_memory_limit(rt.size)
    resources = rt.worker_resources or {
        "requests": {"memory": memory},
        "limits": {"memory": memory},
    }
    volumes: list[dict[str, Any]] = [
        {"name": "vineyard-socket", "hostPath": {"path": rt.host_dir, "type": "DirectoryOrCreate"}},
    ]
    mounts: list[dict[str, Any]] = [{"name": "vineyard-socket", "mountPath": SOCKET_DIR}]
    if rt.spill_path:
        volumes.append({"name": "spill", "hostPath": {"path": rt.spill_path, "type": "DirectoryOrCreate"}})
        mounts.append({"name": "spill", "mountPath": rt.spill_path})
    container = {
        "name": "vineyardd",
        "securityContext": NODE_FOLDER_SECURITY,
        "image": rt.worker_image.ref,
        "imagePullPolicy": rt.worker_image.pull_policy,
        "command": command.argv,
        "env": env,
        "ports": [
            {"name": "rpc", "containerPort": rt.rpc_port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": rt.metrics_port, "protocol": "TCP"},
        ],
        "resources": resources,
        # ready once it joined the cluster: vineyardd binds its socket first and opens it
        # to every user after registering in etcd
        "readinessProbe": {"exec": {"command": ["sh", "-c", f'test -n "$(find {SOCKET} -type s -perm -0002)"']},
                           "periodSeconds": 2},
        "volumeMounts": mounts,
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "affinity": {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": selector(rt, "worker")},
                    "topologyKey": "kubernetes.io/hostname",
                }],
            },
        },
    }
    if rt.worker_node_selector:
        pod_spec["nodeSelector"] = dict(rt.worker_node_selector)
    if rt.host_network:
        pod_spec["hostNetwork"] = True
        pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    return [
        _headless_service(rt, rt.worker_name, "worker", {"rpc": rt.rpc_port, "metrics": rt.metrics_port}),
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta(rt, rt.worker_name, "worker"),
            "spec": {
                "serviceName": rt.worker_name,
                "replicas": rt.workers if replicas is None else replicas,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": selector(rt, "worker")},
                "template": {"metadata": {"labels": peer_labels(rt, "worker")}, "spec": pod_spec},
            },
        },
    ]


def rpc_conf(rt: KubeRuntime) -> dict[str, Any]:
    """ConfigMap ``<name>-rpc-conf`` listing every worker's RPC endpoint."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(rt, rt.rpc_conf_name, None),
        "data": {"VINEYARD_RPC_ENDPOINT": ",".join(rt.rpc_endpoints())},
    }


# -- the client bridge ----------------------------------------------------------------

def bridge_objects(rt: KubeRuntime) -> list[dict[str, Any]]:
    """DaemonSet ``<name>-fuse`` running ``fluidv bridge`` on labelled nodes."""
    command = [
        "fluidv", "bridge",
        "--runtime", rt.name,
        "--namespace", rt.namespace,
        "--socket", SOCKET,
        "--publish-dir", f"{SOCKET_DIR}/fuse",
        "--etcd-endpoint", rt.etcd_endpoint,
        "--metrics-port", str(rt.bridge_metrics_port),
        "--blob-port", str(rt.blob_port),
    ]
    for key, value in sorted(rt.bridge_options.items()):
        command += ["--option", f"{key}={value}"]
    if rt.fuse_view:
        command.append("--view")
    container: dict[str, Any] = {
        "name": "bridge",
        "securityContext": NODE_FOLDER_SECURITY,
        "image": rt.bridge_image.ref,
        "imagePullPolicy": rt.bridge_image.pull_policy,
        "command": command,
        "env": [{"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "FLUIDV_BLOB_TOKEN", "valueFrom": {"secretKeyRef": {
                    "name": rt.blob_token_name, "key": BLOB_TOKEN_KEY}}}]
        + _env(rt.bridge_env),
        "envFrom": [{"configMapRef": {"name": rt.rpc_conf_name}}],
        "ports": [{"name": "bridge-metrics", "containerPort": rt.bridge_metrics_port, "protocol": "TCP"},
                  {"name": "blobs", "containerPort": rt.blob_port, "protocol": "TCP"}],
        # ready once the node's worker answers through the link it published
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": rt.bridge_metrics_port}, "periodSeconds": 2},
        "volumeMounts": [{"name": "vineyard-socket", "mountPath": SOCKET_DIR}],
    }
    volumes: list[dict[str, Any]] = [{"name": "vineyard-socket",
                                      "hostPath": {"path": rt.host_dir, "type": "DirectoryOrCreate"}}]
    if rt.fuse_view:  # mounting needs the device and the right to mount, and the mount must reach the node
        container["securityContext"] = {"privileged": True, "runAsUser": 0}
        container["volumeMounts"] = [{"name": "vineyard-socket", "mountPath": SOCKET_DIR,
                                      "mountPropagation": "Bidirectional"},
                                     {"name": "fuse-device", "mountPath": "/dev/fuse"}]
        volumes.append({"name": "fuse-device", "hostPath": {"path": "/dev/fuse", "type": "CharDevice"}})
    if rt.bridge_resources:
        container["resources"] = rt.bridge_resources
    return [{
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(rt, rt.bridge_name, "fuse"),
        "spec": {
            "selector": {"matchLabels": selector(rt, "fuse")},
            "template": {
                "metadata": {"labels": peer_labels(rt, "fuse")},
                "spec": {
                    "nodeSelector": {fuse_node_label(rt.namespace, rt.name): "true"},
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }]


# -- the dataset's volume -------------------------------------------------------------

#: The capacity of every dataset volume, as in Fluid.
VOLUME_CAPACITY = "100Pi"


def volume_objects(rt: KubeRuntime) -> list[dict[str, Any]]:
    """PV ``<ns>-<name>`` over the bridge's directory and PVC ``<name>`` bound to it.

    Their capacity is Fluid's fixed ``100Pi``: the volume is a view of the cache, and a
    claim's size cannot follow the runtime's scaling (the API server refuses to resize
    a claim that was not dynamically provisioned)."""
    capacity = VOLUME_CAPACITY
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": _meta(rt, rt.pv_name, None, namespaced=False),
            "spec": {
                "capacity": {"storage": capacity},
                "accessModes": list(rt.access_modes),
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "fluid",
                "hostPath": {"path": f"{rt.host_dir}/fuse", "type": "DirectoryOrCreate"},
                "claimRef": {"namespace": rt.namespace, "name": rt.name},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(rt, rt.name, None),
            "spec": {
                "accessModes": list(rt.access_modes),
                "storageClassName": "fluid",
                "volumeName": rt.pv_name,
                "resources": {"requests": {"storage": capacity}},
            },
        },
    ]


def network_policy(rt: KubeRuntime) -> dict[str, Any]:
    """Admit etcd, RPC and blob traffic only from the runtime's own pods (master, workers,
    bridge) and the pods that mount its dataset: those that carry ``PEER_LABEL``, which
    the webhook refuses on any other pod. The metrics port stays open to scrapers.

    vineyardd's RPC port listens on every interface, so this is its only fence (none for
    HostNetwork workers: a NetworkPolicy does not apply to the node's network).
    """
    peers = [{"podSelector": {"matchLabels": {PEER_LABEL: safe_value(rt.name)}}}]
    ports = [rt.rpc_port, rt.blob_port] + ([] if rt.external_etcd else [rt.client_port, rt.peer_port])
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(rt, f"{rt.name}-vineyard", None),
        "spec": {
            "podSelector": {"matchLabels": {
                "app.kubernetes.io/instance": safe_value(rt.name), "app.kubernetes.io/name": "vineyard",
            }},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": peers, "ports": [{"port": p, "protocol": "TCP"} for p in ports]},
                {"ports": [{"port": p, "protocol": "TCP"} for p in (rt.metrics_port, rt.bridge_metrics_port)]},
            ],
        },
    }


def all_objects(rt: KubeRuntime) -> list[dict[str, Any]]:
    """Every object of the runtime, in creation order."""
    return (
        master_objects(rt) + worker_objects(rt) + [rpc_conf(rt)] + bridge_objects(rt)
        + volume_objects(rt) + [network_policy(rt)]
    )
