"""Real Kubernetes nodes for tests: containerd, a kubelet and kube-proxy per node, each
node in a network namespace (``support.netns``) and a mount namespace of its own, and
CoreDNS for the cluster.

``RealNodes(workdir, control_plane, network, images, sandbox_image)`` is started after the
network and the control plane (the API server listens on the network's gateway). Each
node's daemons run under ``nsenter --net=... --mount=...`` (not ``ip netns exec``, which
mounts a fresh ``/sys`` without cgroups):

- the mount namespace gives the node the folders a machine of its own would have: the
  hostPath volumes' roots (``/runtime-mnt``, ``/mnt``, ...), the kubelet's machine-wide
  files, the shims' sockets and the pod logs are bind mounts of folders of the node's
  own, so two nodes never share a worker's socket folder; what the kubelet and
  containerd mount happens inside it and goes with it;
- containerd with its own root, state, socket, runc root and CNI folders; the images are
  imported from archives (no registry);
- a kubelet (cgroupfs driver, cgroup root ``/<netns>``, its own root and certificate
  folders) registered as ``real-node-<i>`` with the node's address;
- kube-proxy in iptables mode, its rules inside the network namespace, setting no global
  sysctl.

CoreDNS serves ``cluster.local`` from the API server on the gateway's port 53. ``stop()``
kills every pod by its cgroup, stops each daemon by pid, ends the mount namespaces,
removes the cgroups and puts back what the kubelet changed on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.containerd import Containerd
from support.host import HostState, cgroup_controllers, remove_cgroup, run, unmount_all
from support.netns import CLUSTER_CIDR, GATEWAY, Network, NodeNet

from vineyard_runtime.plumbing.processes import log_tail, spawn, terminate
from vineyard_runtime.plumbing.waiting import wait_until

#: what the kubelet sets on the whole machine (recorded and put back)
KUBELET_SYSCTLS = ["vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
                   "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes"]
#: folders each node keeps to itself, as a machine of its own would: the roots of hostPath
#: volumes, the kubelet's machine-wide files, the shims' sockets, the pod logs
NODE_FOLDERS = ["/runtime-mnt", "/mnt", "/var/lib/fluid", "/var/lib/fluid-vineyard", "/var/lib/kubelet",
                "/var/log/pods", "/var/log/containers", "/run/containerd"]
PACKAGES = {"containerd": "containerd", "runc": "runc", "nsenter": "util-linux", "unshare": "util-linux",
            "iptables": "iptables", "conntrack": "conntrack", "/usr/lib/cni/bridge": "containernetworking-plugins"}
START_SECONDS = 120.0
CLUSTER_DOMAIN = "cluster.local"


def missing_packages() -> list[str]:
    """Debian packages real nodes need that this machine lacks (``make test`` installs them)."""
    return sorted({package for program, package in PACKAGES.items()
                   if not (os.path.exists(program) if program.startswith("/") else shutil.which(program))})


@dataclass
class Node:
    """One real node: its network place, folders and daemons."""

    net: NodeNet
    home: Path  # sockets and state (short paths: a socket's path has a length limit)
    disk: Path  # images, the kubelet's root, logs
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    containerd: Containerd | None = None

    @property
    def name(self) -> str:
        return f"real-node-{self.net.index}"

    @property
    def mount_ns(self) -> Path:
        return self.home.parent / f"{self.home.name}.mnt"

    @property
    def enter(self) -> tuple[str, ...]:
        """The prefix that runs a command on this node (nsenter execs: the pid is the command's)."""
        return ("nsenter", f"--net=/var/run/netns/{self.net.netns}", f"--mount={self.mount_ns}")

    @property
    def cgroup(self) -> str:
        return self.net.netns

    def own(self, folder: str) -> Path:
        """Where this node's ``folder`` (one of NODE_FOLDERS) is, seen from the machine."""
        return self.disk / "folders" / folder.strip("/").replace("/", "-")


@dataclass
class RealNodes:
    """Real nodes for the network's namespaces, joined to ``control_plane`` (a
    ``ControlPlane`` listening on the network's gateway), running the images of
    ``images`` (archive paths)."""

    workdir: Path
    control_plane: Any
    network: Network
    images: list[Path]
    sandbox_image: str
    nodes: list[Node] = field(default_factory=list)
    host: HostState | None = None
    dns: subprocess.Popen[bytes] | None = None
    base: Path | None = None

    def start(self) -> "RealNodes":
        missing = missing_packages()
        if missing:
            raise RuntimeError(f"real nodes need the Debian packages {', '.join(missing)} "
                               "(make test installs them: `make nodes`)")
        from control_plane import binaries

        bin_dir = binaries("nodes") / "bin"
        self.base = Path("/run") / self.network.prefix
        folders = NODE_FOLDERS + [str(self.base)]
        self.host = HostState.record(KUBELET_SYSCTLS, folders, owned={str(self.base)})
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.base.mkdir()
        # the mount namespaces are kept by bind mounts of their files: those need a private mount
        run(["mount", "--bind", str(self.base), str(self.base)])
        run(["mount", "--make-private", str(self.base)])
        kubeconfig = self.control_plane.kubeconfig
        self.dns = self._start_dns(bin_dir, kubeconfig)
        self.nodes = [Node(net, self.base / f"n{net.index}", self.workdir / f"real-node-{net.index}")
                      for net in self.network.nodes]
        for node in self.nodes:
            self._make_mount_namespace(node)
            self._make_cgroup(node)
            node.containerd = self._containerd(node)
            node.containerd.start()
            for archive in self.images:
                node.containerd.import_image(archive)
        for node in self.nodes:
            self._start_kubelet(node, bin_dir, kubeconfig)
            self._start_proxy(node, bin_dir, kubeconfig)
        for node in self.nodes:
            self._wait(node, lambda node=node: self._ready(node.name), "the node Ready")
        return self

    # -- a node's namespaces and cgroups --------------------------------------------------

    def _make_mount_namespace(self, node: Node) -> None:
        """A mount namespace for ``node`` in which NODE_FOLDERS are folders of its own."""
        node.home.mkdir(parents=True)
        node.mount_ns.touch()
        # private first (no mount reaches the machine), then shared within the node as on a
        # machine of its own: pods' HostToContainer and Bidirectional mounts need it
        run(["unshare", f"--mount={node.mount_ns}", "--propagation", "private", "true"])
        run(["nsenter", f"--mount={node.mount_ns}", "mount", "--make-rshared", "/"])
        for folder in NODE_FOLDERS:
            os.makedirs(folder, exist_ok=True)  # a mount point on the machine (removed after if it was made)
            node.own(folder).mkdir(parents=True, exist_ok=True)
            run(["nsenter", f"--mount={node.mount_ns}", "mount", "--bind", str(node.own(folder)), folder])

    def _make_cgroup(self, node: Node) -> None:
        """``/<netns>`` under every hierarchy: the kubelet's cgroup root for this node."""
        for controller in cgroup_controllers():
            group = controller / node.cgroup
            group.mkdir(exist_ok=True)
            if controller.name == "cpuset":
                for name in ("cpuset.cpus", "cpuset.mems"):
                    (group / name).write_text((controller / name).read_text())

    # -- daemons ------------------------------------------------------------------------

    def _spawn(self, node: Node | None, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.workdir / (f"{node.name}-{name}.log" if node else f"{name}.log")
        process = spawn([*(node.enter if node else ()), *argv], log_path=str(log), death_signal=signal.SIGKILL,
                        new_session=True)
        if node is not None:
            node.processes[name] = process
        return process

    def _start_dns(self, bin_dir: Path, kubeconfig: Path) -> subprocess.Popen[bytes]:
        corefile = self.workdir / "Corefile"
        corefile.write_text(f""".:53 {{
    bind {GATEWAY}
    errors
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{
        kubeconfig {kubeconfig} admin
        pods insecure
        fallthrough in-addr.arpa
    }}
    cache 5
}}
""")
        return self._spawn(None, "coredns", [str(bin_dir / "coredns"), "-conf", str(corefile)])

    def _containerd(self, node: Node) -> Containerd:
        containerd = Containerd(node.home, root=node.disk / "containerd", enter=node.enter,
                                sandbox_image=self.sandbox_image)
        containerd.cni_dir.mkdir(parents=True, exist_ok=True)
        (node.home / "ipam").mkdir(exist_ok=True)
        (containerd.cni_dir / "10-pods.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "pods", "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(node.home / "ipam"),
                          "ranges": [[{"subnet": node.net.pod_subnet, "gateway": node.net.pod_gateway}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "loopback"}]}))
        return containerd

    def _start_kubelet(self, node: Node, bin_dir: Path, kubeconfig: Path) -> None:
        assert node.containerd is not None
        for sub in ("kubelet", "pki"):
            (node.disk / sub).mkdir(parents=True, exist_ok=True)
        config = node.disk / "kubelet.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "failCgroupV1": False, "cgroupDriver": "cgroupfs", "cgroupRoot": f"/{node.cgroup}",
            "containerRuntimeEndpoint": f"unix://{node.containerd.socket}", "failSwapOn": False,
            "address": node.net.address, "readOnlyPort": 0, "healthzBindAddress": "127.0.0.1",
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "clusterDNS": [GATEWAY], "clusterDomain": CLUSTER_DOMAIN, "resolvConf": "",
            "makeIPTablesUtilChains": False,
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "rotateCertificates": False, "registerNode": True,
            "nodeStatusUpdateFrequency": "2s", "syncFrequency": "10s"}))
        labels = {"topology.kubernetes.io/zone": f"zone-{node.net.index}",
                  "topology.kubernetes.io/region": "region-1", "type": "real"}
        self._spawn(node, "kubelet", [
            str(bin_dir / "kubelet"), f"--config={config}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={node.disk / 'kubelet'}", f"--cert-dir={node.disk / 'pki'}", f"--node-ip={node.net.address}",
            f"--hostname-override={node.name}", f"--lock-file={node.home / 'kubelet.lock'}",
            "--node-labels=" + ",".join(f"{k}={v}" for k, v in labels.items())])

    def _start_proxy(self, node: Node, bin_dir: Path, kubeconfig: Path) -> None:
        config = node.disk / "kube-proxy.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)}, "hostnameOverride": node.name,
            "bindAddress": node.net.address, "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249", "mode": "iptables", "clusterCIDR": CLUSTER_CIDR,
            # replies from a pod on the same bridge come back through the node, so no
            # bridge sysctl is needed; and no conntrack value is set (they are global)
            "iptables": {"masqueradeAll": True},
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"}}))
        self._spawn(node, "kube-proxy", [str(bin_dir / "kube-proxy"), f"--config={config}"])

    # -- waiting ------------------------------------------------------------------------

    def _wait(self, node: Node, predicate: Any, what: str, timeout: float = START_SECONDS) -> None:
        """Until ``predicate()``; RuntimeError at once when a process of the node exits."""

        def asked() -> bool:
            for name, process in node.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{node.name}'s {name} exited with {process.returncode} waiting for {what}: "
                                       + log_tail(str(self.workdir / f"{node.name}-{name}.log"), 15))
            return bool(predicate())

        if not wait_until(asked, timeout, interval=0.2):
            raise TimeoutError(f"{node.name}: timed out after {timeout:g}s waiting for {what}")

    def _ready(self, name: str) -> bool:
        node = self.control_plane.request("GET", f"/api/v1/nodes/{name}") or {}
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in (node.get("status") or {}).get("conditions") or [])

    # -- faults ---------------------------------------------------------------------------

    def stop_kubelet(self, index: int) -> None:
        """Stop node ``index``'s kubelet (its pods go on running; the node goes NotReady)."""
        process = self.nodes[index].processes.pop("kubelet")
        terminate([process.pid], timeout=10)
        process.wait()

    def kill_node(self, index: int) -> None:
        """Node ``index`` dies at once: its kubelet and kube-proxy, every process of its pods
        and its containerd are killed. Its pods' addresses stay, with nothing behind them."""
        node = self.nodes[index]
        for name in ("kubelet", "kube-proxy"):
            process = node.processes.pop(name, None)
            if process is not None:
                process.kill()
                process.wait()
        if node.containerd is not None:
            problems = node.containerd.stop(pod_cgroups=[node.cgroup])
            node.containerd = None
            if problems:
                raise RuntimeError(f"{node.name} did not die: {'; '.join(problems)}")

    def kill_container(self, index: int, container_id: str) -> int:
        """SIGKILL every process of one container of node ``index`` (``containerID`` of a
        pod's status, with or without ``containerd://``); how many were killed."""
        node = self.nodes[index]
        wanted = container_id.removeprefix("containerd://")
        pids = {pid for controller in cgroup_controllers()
                for group in (controller / node.cgroup).rglob(wanted) if group.is_dir()
                for pid in map(int, (group / "cgroup.procs").read_text().split())}
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    # -- stop ---------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop everything and put the machine back; what could not be undone."""
        problems: list[str] = []
        for node in self.nodes:
            for name in ("kubelet", "kube-proxy"):
                process = node.processes.pop(name, None)
                if process is not None:
                    terminate([process.pid], timeout=10)
                    process.wait()
        for node in self.nodes:  # the pods (every process in the node's cgroups), the shims, containerd
            if node.containerd is not None:
                problems += node.containerd.stop(pod_cgroups=[node.cgroup])
        if self.dns is not None:
            terminate([self.dns.pid], timeout=10)
            self.dns.wait()
            self.dns = None
        for node in self.nodes:  # no process is left in the mount namespace: unmounting its file ends it
            if node.mount_ns.exists() and run(["umount", str(node.mount_ns)], check=False).returncode != 0:
                problems.append(f"{node.name}'s mount namespace {node.mount_ns} stays")
            problems += remove_cgroup(node.cgroup)
        if self.base is not None:
            problems += [f"still mounted: {point}" for point in unmount_all(str(self.base))]
        if self.host is not None:
            problems += self.host.restore()
        return problems


__all__ = ["NODE_FOLDERS", "Node", "RealNodes", "missing_packages"]
