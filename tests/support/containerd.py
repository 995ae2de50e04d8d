"""A private containerd for tests (Debian's containerd 1.6): its own root, state, sockets,
runc root and CNI folders under one directory, optionally inside a node's network
namespace; images imported from archives (no registry); ``stop()`` ends its containers,
shims and itself by pid and unmounts everything it mounted.

Two things it cannot keep in its directory: the shims' sockets, which containerd 1.6
always puts under ``/run/containerd/s`` (the caller records whether that folder existed),
and the machine-wide capability it lacks here: CAP_SYS_RESOURCE, so its CRI plugin must not
give containers a negative ``oom_score_adj`` (``restrict_oom_score_adj``).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support.host import cgroup_pids, remove_cgroup, run, unmount_all

from vineyard_runtime.plumbing.processes import is_alive, log_tail, spawn, terminate
from vineyard_runtime.plumbing.waiting import wait_until

NAMESPACE = "k8s.io"  # the kubelet's: images imported there are the pods' images
CNI_BIN = "/usr/lib/cni"
_ids = itertools.count(1)


@dataclass
class Containerd:
    """One containerd under ``directory`` (keep it short: socket paths have a length limit)."""

    directory: Path
    #: where images and snapshots go (large: keep it off tmpfs); ``directory/root`` by default
    root: Path | None = None
    #: a command prefix that puts containerd where it runs (``nsenter --net=... --mount=...``)
    enter: tuple[str, ...] = ()
    sandbox_image: str | None = None  # the CRI plugin's pause image
    process: subprocess.Popen[bytes] | None = None
    #: cgroups of containers run with ``run``/``run_argv`` (removed by ``stop``)
    cgroups: list[str] = field(default_factory=list)

    @property
    def socket(self) -> str:
        return str(self.directory / "containerd.sock")

    @property
    def cni_dir(self) -> Path:
        return self.directory / "cni"

    @property
    def log(self) -> str:
        return str(self.directory / "containerd.log")

    def config(self) -> str:
        d, cri = self.directory, 'plugins."io.containerd.grpc.v1.cri"'
        sandbox = f'\n  sandbox_image = "{self.sandbox_image}"' if self.sandbox_image else ""
        return f"""version = 2
root = "{self.root or d / 'root'}"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[{cri}]{sandbox}
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        Root = "{d}/state/runc"
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.cni_dir}"
"""

    def start(self, timeout: float = 60) -> "Containerd":
        """Start it and wait until it answers."""
        for sub in ("root", "state", "cni", "fifo"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        (self.directory / "config.toml").write_text(self.config())
        argv = [*self.enter, "containerd", "--config", str(self.directory / "config.toml")]  # nsenter execs
        self.process = spawn(argv, log_path=self.log, death_signal=signal.SIGKILL, new_session=True)
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"containerd exited ({process.returncode}): {log_tail(self.log)}")
            return self.ctr("version", timeout=30).returncode == 0

        if not wait_until(answers, timeout, interval=0.1):
            raise RuntimeError(f"containerd did not answer on {self.socket} within {timeout:g} s: {log_tail(self.log)}")
        return self

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``ctr`` against this containerd, in the kubelet's namespace."""
        return subprocess.run(["ctr", "-a", self.socket, "-n", NAMESPACE, *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)

    def import_image(self, archive: Path) -> None:
        done = self.ctr("images", "import", str(archive), timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"ctr images import {archive} failed: {done.stderr.strip()}")

    def run_argv(self, image: str, command: tuple[str, ...]) -> tuple[str, list[str]]:
        """A container id and the ``ctr run --rm`` command line that runs ``command`` in
        ``image`` (no network but loopback; its own cgroup, removed by ``stop``)."""
        cid = f"fluidv-test-{os.getpid()}-{next(_ids)}"
        self.cgroups.append(cid)
        return cid, ["ctr", "-a", self.socket, "-n", NAMESPACE, "run", "--rm", "--fifo-dir",
                     str(self.directory / "fifo"), "--runc-root", str(self.directory / "state/runc"),
                     "--cgroup", f"/{cid}", image, cid, *command]

    def run(self, image: str, *command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``command`` (the image's CMD when empty) in ``image`` and wait for it."""
        _, argv = self.run_argv(image, command)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False)

    def shims(self) -> set[int]:
        """Pids of the shims this containerd started (their command lines name its socket)."""
        import psutil

        found = set()
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info["cmdline"] or []
            if cmdline and "containerd-shim" in cmdline[0] and self.socket in cmdline:
                found.add(process.pid)
        return found

    def stop(self, pod_cgroups: Sequence[str] = ()) -> list[str]:
        """Kill every container (those of ``pod_cgroups`` and of ``run``), the shims and
        containerd by pid, unmount everything under ``directory``; what is left."""
        problems = []
        groups = [*pod_cgroups, *self.cgroups]
        for _ in range(20):  # SIGKILL what runs in the containers' cgroups, then the shims
            pids = set().union(*(cgroup_pids(g) for g in groups)) if groups else set()
            pids |= self.shims()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        else:
            problems.append(f"processes of {self.directory} survive SIGKILL: {sorted(pids)}")
        if self.process is not None:
            terminate([self.process.pid], timeout=15)
            self.process.wait(timeout=10)
            if is_alive(self.process.pid):
                problems.append(f"containerd {self.process.pid} still runs")
        problems += [f"still mounted: {point}" for point in unmount_all(str(self.directory))]
        for group in self.cgroups:
            problems += remove_cgroup(group)
        return problems


def remove_shim_sockets(before: set[str]) -> None:
    """Remove the shims' sockets under ``/run/containerd/s`` that were not there ``before``
    and that nothing listens on any more (killed shims leave them)."""
    folder = Path("/run/containerd/s")
    if not folder.is_dir():
        return
    listening = {line.split()[-1] for line in run(["ss", "-xlH"], check=False).stdout.splitlines() if line.split()}
    for entry in folder.iterdir():
        if entry.name not in before and str(entry) not in listening:
            entry.unlink(missing_ok=True)


def shim_sockets() -> set[str]:
    folder = Path("/run/containerd/s")
    return {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()


__all__ = ["CNI_BIN", "NAMESPACE", "Containerd", "remove_shim_sockets", "shim_sockets"]
