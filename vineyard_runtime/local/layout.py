"""Where a local cluster keeps its files inside its working directory."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass

from vineyard_runtime.errors import WorkdirError
from vineyard_runtime.local.access import OWNER_ONLY, Access
from vineyard_runtime.spec import MAX_SOCKET_PATH
from vineyard_runtime.workdir import WORKDIR_ENV, client_config_path, default_workdir



@dataclass(frozen=True)
class Layout:
    """Paths of one local cluster's files."""

    workdir: str

    @property
    def state_file(self) -> str:
        return os.path.join(self.workdir, "cluster.yaml")

    @property
    def client_config(self) -> str:
        """How clients reach the running cluster (``objects.connect()`` reads it)."""
        return client_config_path(self.workdir)

    @property
    def lock_file(self) -> str:
        return os.path.join(self.workdir, "supervisor.lock")

    @property
    def log_dir(self) -> str:
        return os.path.join(self.workdir, "logs")

    @property
    def etcd_data_dir(self) -> str:
        return os.path.join(self.workdir, "etcd")

    @property
    def supervisor_log(self) -> str:
        return os.path.join(self.log_dir, "supervisor.log")

    def log_file(self, daemon: str) -> str:
        return os.path.join(self.log_dir, f"{daemon}.log")

    @property
    def socket_dir(self) -> str:
        """``<workdir>/run``, or a short directory under /tmp when that path is too long."""
        inside = os.path.join(self.workdir, "run")
        if len(os.path.join(inside, "node-999.sock").encode()) <= MAX_SOCKET_PATH:
            return inside
        digest = hashlib.sha1(self.workdir.encode()).hexdigest()[:12]
        return os.path.join(tempfile.gettempdir(), f"fluidv-{digest}")

    def socket(self, node: str) -> str:
        return os.path.join(self.socket_dir, f"{node}.sock")

    @property
    def users_dir(self) -> str:
        return os.path.join(self.workdir, "users")

    def prepare(self, access: Access = OWNER_ONLY) -> None:
        """Create the directories (or take over those of an earlier cluster) with
        ``access``'s modes, or raise WorkdirError saying why it cannot be done."""
        try:
            for path in (self.workdir, self.log_dir, self.socket_dir):
                access.directory(path)
            access.directory(self.users_dir, shared_writes=True)  # each command joins there
            for path in (self.lock_file, self.supervisor_log):
                access.file(path)
            for path in [self.state_file, *(os.path.join(self.log_dir, n) for n in os.listdir(self.log_dir))]:
                if os.path.isfile(path) and not os.path.islink(path):  # left by an earlier cluster
                    access.apply(path, access.file_mode)
            probe = os.path.join(self.workdir, ".write-test")
            with open(probe, "w") as handle:
                handle.write("ok")
            os.unlink(probe)
        except OSError as exc:
            raise WorkdirError(
                f"cannot use {self.workdir!r} as the cluster's working directory: "
                f"{exc.strerror or exc}; pass a writable --workdir or set ${WORKDIR_ENV}"
            ) from None


def node_name(index: int) -> str:
    """Name of the node with this index: ``node-0``, ``node-1``, ..."""
    return f"node-{index}"


__all__ = ["Layout", "default_workdir", "node_name"]
