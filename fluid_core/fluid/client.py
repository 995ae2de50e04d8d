"""``ClientConfig``, ``FluidClient`` and ``FluidDataset`` with fluid-pysdk's arguments,
on the local cluster or on Kubernetes."""

from __future__ import annotations

import warnings
from typing import Any

from fluid_core.flow.scripts import stop_if_importing
from fluid_core.fluid import constants
from fluid_core.fluid.models import wire
from fluid_core.models.object_names import dataset_prefix
from fluid_core.sdk import Dataset, SdkError
from vineyard_runtime.plumbing.waiting import wait_until


class RuntimeShapeWarning(UserWarning):
    """``bind_runtime`` uses a local cluster whose shape is not the one it asked for."""


class ClientConfig:
    """Where flows run: the local cluster (default), or Kubernetes when a kube config
    file or context is given, or ``backend`` (a ``LocalCluster`` or ``KubeClient``)."""

    def __init__(self, namespace: str = "default", runtime_kind: str = constants.VINEYARD_RUNTIME_KIND,
                 kube_config_file: str | None = None, kube_context: str | None = None,
                 kube_client_configuration: Any = None, backend: Any = None) -> None:
        if runtime_kind.lower() not in ("vineyard", "vineyardruntime"):
            raise SdkError(f"this cache is Vineyard: runtime_kind {runtime_kind!r} is not offered; use 'vineyard'")
        self.namespace = namespace
        self.runtime_kind = constants.VINEYARD_RUNTIME_KIND
        self.kube_config_file, self.kube_context = kube_config_file, kube_context
        self.kube_client_configuration = kube_client_configuration
        self.backend = backend


def _dataset_ref(namespace: str, name: str) -> Any:
    from fluid_core.kube import Ref  # noqa: PLC0415

    return Ref(constants.API_VERSION, constants.DATASET_KIND, namespace, name)


def _kube_backend(config: ClientConfig) -> Any:
    import kubernetes  # noqa: PLC0415

    from fluid_core.kube import KubeClient  # noqa: PLC0415

    if config.kube_client_configuration is not None:
        return KubeClient(kubernetes.client.ApiClient(config.kube_client_configuration))
    api = kubernetes.config.new_client_from_config(config_file=config.kube_config_file, context=config.kube_context)
    return KubeClient(api)


class FluidClient:
    """Creates, finds and removes datasets, as fluid-pysdk's ``FluidClient``."""

    def __init__(self, config: ClientConfig) -> None:
        if config is None:
            raise ValueError("config should not be None")
        if not config.namespace:
            raise ValueError("namespace should not be None")
        self.config = config
        self.backend = config.backend
        if self.backend is None and (config.kube_config_file or config.kube_context or config.kube_client_configuration):
            self.backend = _kube_backend(config)
        #: datasets of this client on the local cluster (Kubernetes keeps its own)
        self._local: dict[tuple[str, str], "FluidDataset"] = {}

    @property
    def on_kubernetes(self) -> bool:
        from fluid_core.sdk import _is_kube  # noqa: PLC0415

        return _is_kube(self.backend)

    def create_dataset(self, dataset_name: str, mount_name: str | None = None, mount_point: str | None = None,
                       mount_path: str = "", mode: str = "ReadOnly", options: dict[str, str] | None = None,
                       cred_secret_name: str | None = None, cred_secret_options: dict[str, str] | None = None,
                       namespace: str | None = None, **kwargs: Any) -> None:
        """A Dataset, with one mount (``mount_point`` shown at ``mount_path``) if given."""
        if mode not in ("ReadWrite", "ReadOnly"):
            raise ValueError("mode must be ReadOnly or ReadWrite")
        if (mount_name is None) != (mount_point is None):
            raise ValueError("mount_name and mount_point must be set together")
        if bool(cred_secret_name) != bool(cred_secret_options):
            raise ValueError("cred_secret_name and cred_secret_options must be set together")
        spec: dict[str, Any] = {"accessModes": ["ReadOnlyMany" if mode == "ReadOnly" else "ReadWriteMany"],
                                **wire(kwargs)}
        if mount_point is not None:
            mount: dict[str, Any] = {"name": mount_name, "mountPoint": mount_point, "options": dict(options or {})}
            if mount_path:
                mount["path"] = mount_path
            if cred_secret_options:
                mount["encryptOptions"] = [
                    {"name": key, "valueFrom": {"secretKeyRef": {"name": cred_secret_name, "key": secret_key}}}
                    for key, secret_key in cred_secret_options.items()]
            spec["mounts"] = [mount]
        namespace = namespace or self.config.namespace
        dataset = FluidDataset(dataset_name, namespace, Dataset(dataset_name, namespace, self.backend, spec), self)
        if self.on_kubernetes:
            self.backend.apply(dataset.obj.resource())
        else:
            self._local[(namespace, dataset_name)] = dataset

    def get_dataset(self, dataset_name: str, namespace: str | None = None) -> "FluidDataset":
        namespace = namespace or self.config.namespace
        if not self.on_kubernetes:
            if (namespace, dataset_name) not in self._local:
                raise SdkError(f"no dataset {namespace}/{dataset_name} in this client; create_dataset() it first")
            return self._local[(namespace, dataset_name)]
        body = self.backend.get(_dataset_ref(namespace, dataset_name))
        if body is None:
            raise SdkError(f"no Dataset {namespace}/{dataset_name} on the cluster")
        return FluidDataset(dataset_name, namespace, Dataset(dataset_name, namespace, self.backend,
                                                             body.get("spec") or {}), self)

    def cleanup_dataset(self, dataset_name: str, namespace: str | None = None, wait: bool = True) -> None:
        try:
            dataset = self.get_dataset(dataset_name, namespace)
        except SdkError:
            return
        dataset.clean_up(wait)


class FluidDataset:
    """A dataset: bind it to a runtime, report on it, start flows on it."""

    def __init__(self, name: str, namespace: str, dataset_obj: Dataset, client: FluidClient) -> None:
        self.name, self.namespace = name, namespace
        self.obj = dataset_obj
        self.fluid_client = client

    def bind_runtime(self, runtime_type: str | None = None, replicas: int = 2, cache_capacity_GiB: float = 10,  # noqa: N803 - Fluid's spelling
                     cache_medium: str = "MEM", wait: bool = True, **kwargs: Any) -> None:
        """A VineyardRuntime of ``replicas`` workers of ``cache_capacity_GiB`` each. On the
        local cluster: the cluster that runs is used, else one is started with that shape."""
        if runtime_type is not None and runtime_type.lower() not in ("vineyard", "vineyardruntime"):
            raise SdkError(f"this cache is Vineyard: runtime_type {runtime_type!r} is not offered; use 'vineyard'")
        if cache_medium != "MEM":
            raise SdkError("Vineyard workers cache in memory: cache_medium='MEM'")
        stop_if_importing("bind_runtime()")
        client = self.fluid_client
        if not client.on_kubernetes:
            if client.backend is None:
                client.backend = _local_cluster(replicas, cache_capacity_GiB)
            else:
                _warn_if_other_shape(client.backend, replicas, cache_capacity_GiB,
                                     "the cluster given as ClientConfig(backend=...)",
                                     "pass a cluster of that shape as the backend", stacklevel=3)
            self.obj.backend = client.backend
            return
        runtime = {"apiVersion": constants.API_VERSION, "kind": constants.VINEYARD_RUNTIME_KIND,
                   "metadata": {"name": self.name, "namespace": self.namespace},
                   "spec": {"replicas": replicas, "tieredstore": {"levels": [
                       {"mediumtype": "MEM", "quota": f"{int(cache_capacity_GiB * 1024)}Mi"}]}, **wire(kwargs)}}
        client.backend.apply(runtime)
        if wait:
            self._wait_bound(constants.DEFAULT_POLL_TIMEOUT)

    def _wait_bound(self, timeout: float) -> None:
        if not wait_until(lambda: (self._status() or {}).get("phase") == "Bound", timeout, interval=1):
            raise TimeoutError(f"dataset {self.namespace}/{self.name} is not Bound after {timeout}s")

    def _status(self) -> dict[str, Any] | None:
        client = self.fluid_client
        if client.on_kubernetes:
            body = client.backend.get(_dataset_ref(self.namespace, self.name)) or {}
            return body.get("status")
        if client.backend is None:
            return not_bound("no runtime: call bind_runtime() first")
        return local_status(client.backend, self.namespace, self.name)

    def report_status(self, status_type: str = "cache") -> Any:
        """``mount``, ``cache`` (cacheStates, the dataset's total size and file count),
        ``binding_status`` or ``full``, as Fluid's SDK. Locally the phase is the local
        cluster's: ``Bound`` while it runs with a healthy node, else ``NotBound``."""
        kinds = ["mount", "cache", "binding_status", "full"]
        if status_type not in kinds:
            raise ValueError(f"status_type must be one of {kinds}")
        status = self._status()
        if not status:
            return None
        if status_type == "mount":
            return self.obj.spec.get("mounts")
        if status_type == "cache":
            cache = status.get("cacheStates") or {}
            total = status.get("ufsTotal") or cache.get("cached") or ""  # the dataset is its objects
            return {**cache, "dataset total size": total, "dataset file num": status.get("fileNum") or ""}
        if status_type == "binding_status":
            return {"phase": status.get("phase"), "runtimes": status.get("runtimes") or []}
        return status

    def clean_up(self, wait: bool = True) -> None:
        """Delete the dataset (and, locally, its objects)."""
        client = self.fluid_client
        if client.on_kubernetes:
            ref = _dataset_ref(self.namespace, self.name)
            client.backend.delete(ref)
            if wait:
                wait_until(lambda: client.backend.get(ref) is None, constants.DEFAULT_POLL_TIMEOUT, interval=1)
            return
        if client.backend is not None:
            import objects  # noqa: PLC0415

            with objects.connect(client.backend.nodes[0].socket) as store:
                store.delete_many(prefix=dataset_prefix(self.namespace, self.name))
        client._local.pop((self.namespace, self.name), None)

    def _flow(self) -> Any:
        from fluid_core.fluid.dataflow import FluidDataFlow  # noqa: PLC0415

        return FluidDataFlow(self)

    def preload(self, target_path: Any = "/", load_metadata: bool = False) -> Any:
        return self._flow().preload(target_path, load_metadata)

    def load(self, target_path: Any = "/", load_metadata: bool = False) -> Any:
        """Fluid's other name for ``preload``."""
        return self._flow().load(target_path, load_metadata)

    def migrate(self, path: str, migrate_direction: str, external_storage: Any = None) -> Any:
        """Without ``external_storage``: between the dataset and its own mount."""
        return self._flow().migrate(path, migrate_direction, external_storage)

    def process(self, dataset_mountpath: str = constants.DEFAULT_DATASET_MOUNTPATH, processor: Any = None,
                sub_path: str | None = None) -> Any:
        return self._flow().process(dataset_mountpath, processor, sub_path)


def _local_cluster(replicas: int, capacity_gib: float) -> Any:
    """The local cluster that runs (``$FLUIDV_HOME``), else a new one of that shape. A
    running cluster of another shape is used, with a ``RuntimeShapeWarning``."""
    from vineyard_runtime.local import LocalCluster, default_workdir  # noqa: PLC0415
    from vineyard_runtime.local.cluster import is_running  # noqa: PLC0415

    workdir = default_workdir()
    if is_running(workdir):
        cluster = LocalCluster.attach(workdir)
        _warn_if_other_shape(cluster, replicas, capacity_gib, f"the cluster that runs in {cluster.workdir}",
                             f"stop it (`fluidv cluster down --workdir {cluster.workdir}`) or set $FLUIDV_HOME "
                             "to another folder, then bind again", stacklevel=4)
        return cluster
    return LocalCluster(nodes=replicas, size=f"{int(capacity_gib * 1024)}Mi", workdir=workdir).start()


def _warn_if_other_shape(cluster: Any, replicas: int, capacity_gib: float, which: str, remedy: str, *,
                         stacklevel: int) -> None:
    """A RuntimeShapeWarning (shown at the caller ``stacklevel`` frames up) when
    ``cluster`` is not ``replicas`` nodes of ``capacity_gib``."""
    from vineyard_runtime.quantity import human_bytes, parse_quantity  # noqa: PLC0415

    if not cluster.running():  # nothing to compare; its status says NotBound
        return
    nodes, size = len(cluster.nodes), parse_quantity(cluster.config.size)
    asked = int(capacity_gib * 1024) * 2**20
    if (nodes, size) != (replicas, asked):
        warnings.warn(f"bind_runtime(replicas={replicas}, cache_capacity_GiB={capacity_gib:g}) uses {which}: "
                      f"{nodes} node(s) of {human_bytes(size)}, not {replicas} of {human_bytes(asked)}. "
                      f"For the shape asked for, {remedy}", RuntimeShapeWarning, stacklevel=stacklevel)


def not_bound(why: str) -> dict[str, Any]:
    """A local dataset's status while it has no cluster to be cached in."""
    from fluid_core.reconcilers.conditions import set_condition  # noqa: PLC0415
    from fluid_core.stamps import now_stamp  # noqa: PLC0415

    return {"phase": "NotBound", "runtimes": [],
            "conditions": set_condition([], "Ready", False, "NotBound", why, now_stamp())}


def local_status(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    """A local dataset's status as Fluid reports it, from the local cluster's state:
    ``Bound`` while the cluster runs and a node of it is healthy (the ``Ready``
    condition names the nodes that are not), ``NotBound`` when no cluster runs or no
    node answers. ``cacheStates`` come from the healthy nodes' memory and the bytes of
    the dataset's objects, which are also its ``ufsTotal``."""
    import objects  # noqa: PLC0415
    from fluid_core.reconcilers.conditions import set_condition  # noqa: PLC0415
    from fluid_core.reconcilers.dataset import cache_states  # noqa: PLC0415
    from fluid_core.stamps import now_stamp  # noqa: PLC0415
    from vineyard_runtime.errors import VineyardRuntimeError  # noqa: PLC0415
    from vineyard_runtime.local.status import collect_status  # noqa: PLC0415
    from vineyard_runtime.quantity import human_bytes  # noqa: PLC0415

    where = f"the local cluster in {cluster.workdir}"
    try:
        nodes = collect_status(cluster.state) if cluster.running() else None
    except VineyardRuntimeError:  # it stopped between the two looks
        nodes = None
    if nodes is None:
        return not_bound(f"no cluster runs in {cluster.workdir}: start it (`fluidv cluster up`) or call "
                         "bind_runtime() again")
    healthy = [n for n in nodes if n.health == "healthy"]
    sick = "; ".join(f"{n.name}: {n.health}" for n in nodes if n.health != "healthy")
    if not healthy:
        return not_bound(f"no node of {where} is healthy: {sick}")
    try:
        with objects.connect(healthy[0].socket) as store:
            refs = store.list(prefix=dataset_prefix(namespace, name))
    except (objects.ObjectsError, VineyardRuntimeError, OSError) as exc:
        return not_bound(f"{where} does not answer: {exc}")
    total = sum(r.nbytes for r in refs)
    ready = f"bound to {where}: {len(healthy)} of {len(nodes)} node(s) healthy{'; ' + sick if sick else ''}"
    return {"phase": "Bound", "runtimes": [{"name": name, "namespace": namespace, "category": "Accelerate",
                                            "type": "vineyard"}],
            "cacheStates": cache_states(sum(n.memory_limit or 0 for n in healthy), total),
            "ufsTotal": human_bytes(total), "fileNum": str(len(refs)),
            "conditions": set_condition([], "Ready", True, "DatasetReady", ready, now_stamp())}
