"""A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK simulating the nodes and their pods.

The binaries, etcd included (a 3.6 release: the API server's watch cache needs watch
progress reports), come from ``controlplane/build.sh``, built once into a cache outside
the repository. Everything listens on 127.0.0.1 on ports picked free at start, every
process is stopped by its pid, and nothing is reached but loopback. For real nodes
(``support/nodes.py``) the API server also listens on ``address``, the test's end of
the nodes' network, and keeps the ``kubernetes`` Service's endpoint so that pods reach it.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vineyard_runtime.plumbing.processes import log_tail, spawn, terminate
from vineyard_runtime.plumbing.ports import free_ports
from vineyard_runtime.plumbing.waiting import wait_until

HERE = Path(__file__).resolve().parent
BUILD = HERE / "controlplane" / "build.sh"
#: The token of the test's administrator (group system:masters).
ADMIN_TOKEN = "fluid-vineyard-test-admin"
START_SECONDS = 120.0
CR_API = "data.fluid.io/v1alpha1"


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def project_crds() -> tuple[dict[str, Any], ...]:
    """The project's generated CustomResourceDefinitions (``crds/``)."""
    import yaml

    return tuple(yaml.safe_load(path.read_text()) for path in sorted((HERE.parent / "crds").glob("*.yaml")))


def create_resource(kube: Any, kind: str, name: str, spec: dict[str, Any], namespace: str) -> None:
    """Create a data.fluid.io resource through ``kube`` (a KubeClient)."""
    from fluid_core.kube import Ref

    kube.request("POST", Ref(CR_API, kind, namespace).path(), {
        "apiVersion": CR_API, "kind": kind, "spec": spec, "metadata": {"name": name, "namespace": namespace}})


def resource_status(kube: Any, kind: str, name: str, namespace: str) -> dict[str, Any]:
    """A data.fluid.io resource's status ({} while it has none or is gone)."""
    from fluid_core.kube import Ref

    return (kube.get(Ref(CR_API, kind, namespace, name)) or {}).get("status") or {}


def binaries(which: str = "control-plane") -> Path:
    """The directory with ``bin/`` and ``stages.yaml``, built now if the cache lacks it."""
    done = subprocess.run(["bash", str(BUILD), which], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"building the test cluster's {which} failed: {done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _serving_certificate(directory: Path, address: str | None, service_range: str) -> tuple[Path, Path]:
    """The API server's certificate: for loopback, and for real nodes ``address`` and the
    names and ClusterIP by which pods reach the ``kubernetes`` Service."""
    import ipaddress

    from fluid_core.operator.certs import self_signed

    names = ["127.0.0.1", "localhost"]
    if address:
        service_ip = str(next(ipaddress.ip_network(service_range).hosts()))
        names += [address, service_ip, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                  "kubernetes.default.svc.cluster.local"]
    cert, key = self_signed(names, directory)
    return Path(cert), Path(key)


def _service_account_keys(directory: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = directory / "sa.key", directory / "sa.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@dataclass
class ControlPlane:
    """``with ControlPlane(workdir, nodes=3) as cp: cp.kube.get(...)``."""

    workdir: Path
    nodes: int = 3
    #: zone of each node (``topology.kubernetes.io/zone``); the region is ``region-1``
    zones: tuple[str, ...] = ("zone-a", "zone-a", "zone-b")
    #: pods each node takes (its ``allocatable.pods``)
    pods_per_node: int = 110
    #: nodes are named prefix0, prefix1, … (``node-`` matches a local cluster's nodes)
    node_prefix: str = "kwok-node-"
    #: CustomResourceDefinitions installed before the controllers start (so that the
    #: garbage collector knows their kinds as owners from its first discovery)
    crds: tuple[dict[str, Any], ...] = ()
    #: write the API server's audit log (every request's user, verb, resource, code)
    audit: bool = False
    #: where the API server listens besides loopback (real nodes reach it there), and the
    #: Service range; with an address, the ``kubernetes`` Service gets its endpoint
    address: str | None = None
    service_range: str = "10.96.0.0/16"
    url: str = ""
    kubeconfig: Path = field(default_factory=Path)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def node_names(self) -> list[str]:
        return [f"{self.node_prefix}{index}" for index in range(self.nodes)]

    # -- start and stop ---------------------------------------------------------------

    def __enter__(self) -> "ControlPlane":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        built = binaries()
        bin_dir = built / "bin"
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        cert, key = _serving_certificate(pki, self.address, self.service_range)
        sa_key, sa_pub = _service_account_keys(pki)
        tokens = pki / "tokens.csv"
        tokens.write_text(f'{ADMIN_TOKEN},admin,admin,"system:masters"\n')
        tokens.chmod(0o600)
        self.ca = cert

        client, peer, api, metrics, kwok = free_ports(5)
        self._spawn("etcd", [str(bin_dir / "etcd"), "--data-dir", str(self.workdir / "etcd"), "--name", "cp",
                             "--listen-client-urls", f"http://127.0.0.1:{client}",
                             "--advertise-client-urls", f"http://127.0.0.1:{client}",
                             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-cluster", f"cp=http://127.0.0.1:{peer}",
                             "--listen-metrics-urls", f"http://127.0.0.1:{metrics}"])
        self.url = f"https://{self.address or '127.0.0.1'}:{api}"
        self.port = api
        if self.address:  # reached by real nodes (the Service's endpoint); webhooks at their pods' IPs
            listen = [f"--bind-address={self.address}", f"--advertise-address={self.address}",
                      "--endpoint-reconciler-type=lease", "--enable-aggregator-routing=true",
                      "--kubelet-preferred-address-types=InternalIP,Hostname"]
        else:
            listen = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]
        self._spawn("kube-apiserver", [
            str(bin_dir / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{client}",
            *listen, f"--secure-port={api}",
            f"--tls-cert-file={cert}", f"--tls-private-key-file={key}", f"--client-ca-file={cert}",
            f"--token-auth-file={tokens}", "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={sa_pub}", f"--service-account-signing-key-file={sa_key}",
            f"--service-cluster-ip-range={self.service_range}",
            "--allow-privileged=true", "--profiling=false", "--enable-priority-and-fairness=false",
            *self._audit_flags(),
        ])
        self.kubeconfig = self._write_kubeconfig(self.workdir / "kubeconfig", "admin", ADMIN_TOKEN)
        self._wait(self._ready, "kube-apiserver answers /readyz")
        self.install_crds(self.crds)
        common = [f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", "--secure-port=0"]
        self._spawn("kube-controller-manager", [
            str(bin_dir / "kube-controller-manager"), *common,
            f"--service-account-private-key-file={sa_key}", f"--root-ca-file={cert}",
            "--use-service-account-credentials=true", "--controllers=*,-node-ipam-controller",
            # KWOK renews every node's lease from one process: when a benchmark saturates the
            # machine, a late renewal must not mark nodes NotReady (and their pods not Ready).
            "--node-monitor-grace-period=10m"])
        self._spawn("kube-scheduler", [str(bin_dir / "kube-scheduler"), *common])
        self._spawn("kwok", [
            str(bin_dir / "kwok"), f"--kubeconfig={self.kubeconfig}", f"--config={built / 'stages.yaml'}",
            # only the nodes it was told to play: real kubelets run the others
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--server-address=127.0.0.1:{kwok}", "--node-ip=127.0.0.1"])
        for index, name in enumerate(self.node_names()):
            self.create_node(name, self.zones[index % len(self.zones)])
        self._wait(lambda: self._ready_nodes() == self.nodes, f"{self.nodes} KWOK nodes Ready")
        self._wait(lambda: self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default") is not None,
                   "the default ServiceAccount (controller manager running)")

    def _audit_flags(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(json.dumps({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                      "omitStages": ["RequestReceived"], "rules": [{"level": "Metadata"}]}))
        return [f"--audit-policy-file={policy}", f"--audit-log-path={self.workdir / 'audit.log'}",
                "--audit-log-mode=blocking"]

    def audit_events(self, user: str) -> list[dict[str, Any]]:
        """The audit log's finished requests made by ``user`` (``audit=True``)."""
        events = []
        with open(self.workdir / "audit.log") as log:
            for line in log:
                event = json.loads(line)
                if event.get("stage") == "ResponseComplete" and event["user"].get("username") == user:
                    events.append(event)
        return events

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``argv``; the kernel kills it if the test process dies without stopping it."""
        self.processes[name] = spawn(argv, env=env, log_path=str(self.workdir / f"{name}.log"),
                                     death_signal=signal.SIGKILL, new_session=True)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds each of the control plane's processes has used so far."""
        return {name: cpu_seconds(process.pid) for name, process in self.processes.items()}

    def stop(self) -> None:
        """Stop every process by its pid, the last started first (SIGKILL after 10 s)."""
        for name in reversed(list(self.processes)):
            process = self.processes.pop(name)
            terminate([process.pid], timeout=10)
            process.wait()

    # -- waiting ----------------------------------------------------------------------

    def _wait(self, predicate: Callable[[], Any], what: str, timeout: float = START_SECONDS) -> Any:
        """``predicate``'s first truthy value; RuntimeError at once when a process of the
        control plane exits meanwhile, TimeoutError at ``timeout``."""

        def asked() -> Any:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode} waiting for {what}: "
                                       f"{self.log_tail(name)}")
            try:
                return predicate()
            except (OSError, ValueError):
                return None

        found = wait_until(asked, timeout, interval=0.2)
        if not found:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        return found

    def log_tail(self, name: str, lines: int = 15) -> str:
        return log_tail(str(self.workdir / f"{name}.log"), lines)

    def _ready(self) -> bool:
        with self._open("GET", "/readyz") as reply:
            return reply.status == 200

    def _ready_nodes(self) -> int:
        nodes = (self.request("GET", "/api/v1/nodes") or {}).get("items", [])
        return sum(1 for n in nodes if any(c["type"] == "Ready" and c["status"] == "True"
                                           for c in (n.get("status") or {}).get("conditions") or []))

    # -- requests -----------------------------------------------------------------------

    def _open(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        request = urllib.request.Request(self.url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                                  "Content-Type": content_type, "Accept": "application/json"})
        return urllib.request.urlopen(request, context=ssl.create_default_context(cafile=str(self.ca)), timeout=10)

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> dict[str, Any] | None:
        """One request as the administrator; None for 404."""
        try:
            with self._open(method, path, body, content_type) as reply:
                text = reply.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return json.loads(text) if text else {}

    def install_crds(self, crds: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> None:
        """Create ``crds`` and wait until each is Established."""
        base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        for crd in crds:
            self.request("POST", base, crd)
        for crd in crds:
            name = crd["metadata"]["name"]
            self._wait(lambda: any(c["type"] == "Established" and c["status"] == "True" for c in (
                (self.request("GET", f"{base}/{name}") or {}).get("status") or {}).get("conditions") or []),
                f"CRD {name} established")

    def create_node(self, name: str, zone: str) -> None:
        """A node KWOK plays the kubelet of, with zone/region and hostname labels."""
        self.request("POST", "/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone,
                                    "topology.kubernetes.io/region": "region-1", "type": "kwok"}},
            "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": str(self.pods_per_node)},
                       "capacity": {"cpu": "32", "memory": "256Gi", "pods": str(self.pods_per_node)}}})

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path) -> Path:
        """A kubeconfig at ``path`` with a token of ServiceAccount ``namespace/name``
        (the TokenRequest API: what a pod of that account is given)."""
        token = self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600}})["status"]["token"]
        return self._write_kubeconfig(path, name, token)

    def _write_kubeconfig(self, path: Path, user: str, token: str) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": user,
            "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority": str(self.ca)}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": "test", "user": user}}]}))
        path.chmod(0o600)
        return path

    def register_webhook(self, name: str, url: str, ca_file: str, namespace: str | None = None,
                         object_labels: dict[str, str] | None = None, failure_policy: str = "Fail") -> None:
        """A MutatingWebhookConfiguration sending pod creations (of ``namespace``, of pods
        with ``object_labels``) to ``url``, trusted through ``ca_file``."""
        import base64

        webhook: dict[str, Any] = {
            "name": "placement.data.fluid.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": failure_policy, "timeoutSeconds": 5,
            "clientConfig": {"url": url, "caBundle": base64.b64encode(Path(ca_file).read_bytes()).decode()},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}
        if namespace:
            webhook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
        if object_labels:
            webhook["objectSelector"] = {"matchLabels": object_labels}
        self.request("POST", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", {
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name}, "webhooks": [webhook]})

    def api_client(self) -> Any:
        """A ``kubernetes`` ApiClient for the administrator."""
        import kubernetes

        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca)
        configuration.api_key = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        return kubernetes.client.ApiClient(configuration)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 60.0,
                 message: str | Callable[[], str] = "") -> Any:
        """Poll ``predicate`` until truthy (AssertionError with ``message`` at the timeout,
        made then when it is a function, and the operator's last log lines when one ran)."""
        try:
            return self._wait(predicate, message if isinstance(message, str) else "a state", timeout)
        except TimeoutError as exc:
            said = str(exc) if isinstance(message, str) else f"timed out after {timeout:g}s waiting for {message()}"
            operator = self.workdir / "operator.log"
            tail = f"; operator log: {self.log_tail('operator')}" if operator.exists() else ""
            raise AssertionError(f"{said}{tail}") from None


class OperatorProcess:
    """``fluidv operator`` watching ``namespace``, its webhook on loopback (``tls``, a
    certificate for 127.0.0.1, and its key); started and stopped (or killed) by its pid."""

    def __init__(self, control_plane: ControlPlane, namespace: str | None, tls: tuple[str, str], webhook_port: int,
                 env: dict[str, str] | None = None, kubeconfig: Path | None = None,
                 policy: Path | None = None) -> None:
        """``namespace`` None: every namespace; ``kubeconfig`` (default the administrator's):
        whose credentials the operator uses; ``policy``: its ``--policy`` file."""
        self.control_plane, self.namespace, self.tls, self.webhook_port = control_plane, namespace, tls, webhook_port
        self.env = env or {}
        self.kubeconfig = kubeconfig or control_plane.kubeconfig
        self.policy = policy
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {"KUBECONFIG": str(self.kubeconfig), "FLUIDV_LOCATIONS_SECONDS": "0",
               "FLUIDV_RESYNC_SECONDS": "1", "FLUIDV_FULL_APPLY_SECONDS": "5", **self.env}
        cert, key = self.tls
        argv = [sys.executable, "-m", "fluid_core.cli", "operator",
                *(["--namespace", self.namespace] if self.namespace else []),
                "--webhook-host", "127.0.0.1", "--webhook-port", str(self.webhook_port),
                "--webhook-cert", cert, "--webhook-key", key, "--metrics-port", "0",
                "--liveness", f"http://127.0.0.1:{free_ports(1)[0]}/healthz",
                *(["--policy", str(self.policy)] if self.policy else [])]
        if os.environ.get("FLUIDV_TEST_OPERATOR_VERBOSE"):  # kopf's debug log, to find a stall
            argv.append("--verbose")
        self.process = spawn(argv, env=env, log_path=str(self.control_plane.workdir / "operator.log"),
                             death_signal=signal.SIGKILL, new_session=True)

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        terminate([self.process.pid], timeout=20)
        self.process.wait()
        self.process = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


    def cpu_seconds(self) -> float:
        """User and system CPU seconds the running operator has used."""
        assert self.process is not None
        return cpu_seconds(self.process.pid)
