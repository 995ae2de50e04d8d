"""Keep a FUSE view mounted: restart the FUSE process when it dies, unmount on exit."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading

from objects.errors import ObjectsError
from vineyard_runtime.plumbing.restarts import Backoff
from vineyard_runtime.plumbing.waiting import wait_until
from vineyard_runtime.plumbing.processes import spawn, terminate

MOUNT_TIMEOUT = 30.0


def is_mounted(path: str) -> bool:
    return os.path.ismount(path)


def is_dead(path: str) -> bool:
    """A mount whose FUSE process is gone answers ENOTCONN."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def unmount(path: str) -> None:
    """Unmount ``path`` (lazily when busy); quiet when it is not mounted."""
    for flags in (["-u"], ["-u", "-z"]):
        if not (is_mounted(path) or is_dead(path)):
            return
        subprocess.run(["fusermount3", *flags, path], capture_output=True, timeout=30, check=False)


class MountSupervisor:
    """Serves ``prefix`` at ``mountpoint`` through a child FUSE process and remounts it
    within a second of the child dying; ``stop()`` unmounts."""

    def __init__(self, mountpoint: str, prefix: str, *, socket: str | None = None, config: str | None = None,
                 workdir: str | None = None, node: str | None = None, writable: bool = False,
                 allow_other: bool = False, log_path: str | None = None, metrics_port: int | None = None) -> None:
        self.mountpoint = os.path.abspath(mountpoint)
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.socket, self.config, self.writable = socket, config, writable
        self.workdir, self.node, self.allow_other = workdir, node, allow_other
        self.metrics_port = metrics_port
        self.log_path = log_path or os.path.join(os.path.dirname(self.mountpoint),
                                                 f".{os.path.basename(self.mountpoint)}.fuse.log")
        self.restarts = 0
        self.child: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()

    def _check_mountpoint(self) -> None:
        unmount(self.mountpoint)  # a dead mount left by an earlier run
        if not os.path.isdir(self.mountpoint):
            raise ObjectsError(f"mount point {self.mountpoint} is not a directory; create it first")
        if os.listdir(self.mountpoint):
            raise ObjectsError(f"mount point {self.mountpoint} is not empty; use an empty directory")

    def _start_child(self) -> None:
        argv = [sys.executable, "-m", "objects.fuseview", self.mountpoint, "--prefix", self.prefix]
        if self.socket:
            argv += ["--socket", self.socket]
        if self.config:
            argv += ["--config", self.config]
        if self.workdir:
            argv += ["--workdir", self.workdir]
        if self.node:
            argv += ["--node", self.node]
        if self.writable:
            argv.append("--writable")
        if self.allow_other:
            argv.append("--allow-other")
        if self.metrics_port is not None:
            argv += ["--metrics-port", str(self.metrics_port)]
        logged = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.child = spawn(argv, log_path=self.log_path)
        child = self.child
        wait_until(lambda: is_mounted(self.mountpoint) or child.poll() is not None, MOUNT_TIMEOUT)
        if not is_mounted(self.mountpoint):
            terminate([child.pid])
            raise ObjectsError(f"the FUSE view did not mount at {self.mountpoint}: {self._why(logged)}")

    def _why(self, offset: int) -> str:
        """The mount process's own one-line reason (in what it logged past ``offset``),
        else where to look."""
        from objects.fuseview import ERROR_MARK  # noqa: PLC0415

        with open(self.log_path, errors="replace") as log:
            log.seek(offset)
            lines = log.read().splitlines()
        reasons = [line[len(ERROR_MARK):] for line in lines if line.startswith(ERROR_MARK)]
        if reasons:
            return reasons[-1]
        return f"see {self.log_path}, which ends with:\n" + "\n".join(lines[-6:])

    def start(self) -> "MountSupervisor":
        self._check_mountpoint()
        self._start_child()
        return self

    def watch(self, interval: float = 0.2) -> None:
        """Remount whenever the FUSE process dies, until ``stop()``."""
        backoff = Backoff()
        backoff.started_now()
        while not self._stop.wait(interval):
            assert self.child is not None
            if not backoff.pending:  # running: is it still serving?
                if self.child.poll() is None and not is_dead(self.mountpoint):
                    continue
                terminate([self.child.pid], timeout=5)
                unmount(self.mountpoint)
            if not backoff.may_restart():
                continue  # wait out the delay, still answering stop()
            self.restarts += 1
            try:
                self._start_child()
                backoff.started_now()
            except ObjectsError:  # the store may be restarting too: try again, later each time
                backoff.schedule()

    def interrupt(self) -> None:
        """End ``watch()`` (safe from a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        """End watching, stop the FUSE process and unmount."""
        self._stop.set()
        if self.child is not None:
            unmount(self.mountpoint)
            terminate([self.child.pid], timeout=10)
            unmount(self.mountpoint)
