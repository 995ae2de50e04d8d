"""``ClientConfig``, ``FluidClient`` and ``FluidDataset`` with fluid-pysdk's arguments,
on the local cluster or on Kubernetes."""

from __future__ import annotations

from typing import Any

from fluid_core.fluid import constants
from vineyard_runtime.waiting import wait_until
from fluid_core.fluid.models import wire
from fluid_core.sdk import Dataset, SdkError


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
    from fluid_core.operator.kube import Ref  # noqa: PLC0415

    return Ref(constants.API_VERSION, constants.DATASET_KIND, namespace, name)


def _kube_backend(config: ClientConfig) -> Any:
    import kubernetes  # noqa: PLC0415

    from fluid_core.operator.kube import KubeClient  # noqa: PLC0415

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
        client = self.fluid_client
        if not client.on_kubernetes:
            if client.backend is None:
                client.backend = _local_cluster(replicas, cache_capacity_GiB)
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
            return None
        return local_status(client.backend, self.namespace, self.name)

    def report_status(self, status_type: str = "cache") -> Any:
        """``mount``, ``cache`` (cacheStates), ``binding_status`` or ``full``, as Fluid's SDK."""
        kinds = ["mount", "cache", "binding_status", "full"]
        if status_type not in kinds:
            raise ValueError(f"status_type must be one of {kinds}")
        status = self._status()
        if not status:
            return None
        if status_type == "mount":
            return self.obj.spec.get("mounts")
        if status_type == "cache":
            return {**(status.get("cacheStates") or {}), "dataset total size": status.get("ufsTotal") or "",
                    "dataset file num": status.get("fileNum") or ""}
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
                store.delete_many(prefix=f"{self.namespace}/{self.name}/")
        client._local.pop((self.namespace, self.name), None)

    def _flow(self) -> Any:
        from fluid_core.fluid.dataflow import FluidDataFlow  # noqa: PLC0415

        return FluidDataFlow(self)

    def preload(self, target_path: Any = "/", load_metadata: bool = False) -> Any:
        return self._flow().preload(target_path, load_metadata)

    def migrate(self, path: str, migrate_direction: str, external_storage: Any) -> Any:
        return self._flow().migrate(path, migrate_direction, external_storage)

    def process(self, dataset_mountpath: str, processor: Any, sub_path: str | None = None) -> Any:
        return self._flow().process(dataset_mountpath, processor, sub_path)


def _local_cluster(replicas: int, capacity_gib: float) -> Any:
    """The local cluster that runs (``$FLUIDV_HOME``), else a new one of that shape."""
    from vineyard_runtime.local import LocalCluster, default_workdir  # noqa: PLC0415
    from vineyard_runtime.local.cluster import is_running  # noqa: PLC0415

    workdir = default_workdir()
    if is_running(workdir):
        return LocalCluster.attach(workdir)
    return LocalCluster(nodes=replicas, size=f"{int(capacity_gib * 1024)}Mi", workdir=workdir).start()


def local_status(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    """A local dataset's status as Fluid reports it: Bound, with ``cacheStates`` from the
    nodes' memory and the bytes of the dataset's objects."""
    import objects  # noqa: PLC0415
    from fluid_core.reconcilers.dataset import cache_states  # noqa: PLC0415

    capacity = sum(n.memory_limit or 0 for n in cluster.status())
    with objects.connect(cluster.nodes[0].socket) as store:
        refs = store.list(prefix=f"{namespace}/{name}/")
    return {"phase": "Bound", "runtimes": [{"name": name, "namespace": namespace, "category": "Accelerate",
                                            "type": "vineyard"}],
            "cacheStates": cache_states(capacity, sum(r.nbytes for r in refs)),
            "fileNum": str(len(refs)), "conditions": []}
