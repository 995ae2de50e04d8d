"""Where a backup is, in Fluid's words: ``pvc://<claim>/<subpath>``, ``local:///<dir>``
(on a node), or any URI pyarrow opens. DataBackup writes there; a Dataset's
``dataRestoreLocation`` restores from there when it binds.

On the local cluster ``local://`` is a path of this machine and ``pvc://`` has no
meaning; on Kubernetes the claim or the host directory is a volume of the operation's
pod, mounted at ``MOUNT_PATH``.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from fluid_core.models.mounts import source_of

#: Where the backup's volume appears in an operation's pod.
MOUNT_PATH = "/fluid-backup"
VOLUME = "fluid-backup"


@dataclass(frozen=True)
class BackupLocation:
    path: str

    @property
    def _pvc(self) -> tuple[str, str] | None:
        if not self.path.startswith("pvc://"):
            return None
        claim, _, sub = self.path[len("pvc://"):].partition("/")
        return claim, sub.strip("/")

    def local(self) -> str:
        """The location on this machine (MountError for ``pvc://``)."""
        return source_of(self.path)

    def in_pod(self) -> str:
        """The location inside an operation's pod that mounts ``volume()``."""
        pvc = self._pvc
        if pvc is not None:
            return posixpath.join(MOUNT_PATH, pvc[1]) if pvc[1] else MOUNT_PATH
        return MOUNT_PATH if self.path.startswith("local://") else self.path

    def volume(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The pod volume and mount holding the backup (None for a URI, read directly)."""
        mount = {"name": VOLUME, "mountPath": MOUNT_PATH}
        pvc = self._pvc
        if pvc is not None:
            return {"name": VOLUME, "persistentVolumeClaim": {"claimName": pvc[0]}}, mount
        if self.path.startswith("local://"):
            host = self.local()
            return {"name": VOLUME, "hostPath": {"path": host, "type": "DirectoryOrCreate"}}, mount
        return None
