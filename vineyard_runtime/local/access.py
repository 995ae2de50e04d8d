"""Who may use a local cluster: the user who started it, and optionally one group.

Everything of the cluster (its working directory, logs, ``cluster.yaml``, the nodes'
sockets and their holds) is owner-only by default. ``--group NAME`` shares it with the
members of that group: they may connect to the sockets and read the logs, nobody else
may. A directory someone else owns, or a symbolic link where a directory belongs, is
refused: another local user could otherwise plant the socket directory beforehand.

What no mode can fence (vineyard 0.24.2 has no authentication): etcd listens on
127.0.0.1 and each vineyardd's RPC port on every interface; see docs/local-cluster.md.
"""

from __future__ import annotations

import functools
import grp
import os
import stat
from dataclasses import dataclass

from vineyard_runtime.errors import InvalidSpec, WorkdirError


@dataclass(frozen=True)
class Access:
    """The modes a cluster's files get: the owner's alone, or shared with ``group``."""

    group: str | None = None

    @functools.cached_property
    def gid(self) -> int | None:
        """The group's id (None when the cluster is not shared); InvalidSpec when this user
        is not a member, or the group does not exist."""
        if self.group is None:
            return None
        try:
            gid = grp.getgrnam(self.group).gr_gid
        except KeyError:
            raise InvalidSpec(f"--group {self.group!r}: no such group on this machine") from None
        if os.geteuid() != 0 and gid not in os.getgroups() and gid != os.getegid():
            raise InvalidSpec(f"--group {self.group!r}: you are not a member, so you cannot share with it")
        return gid

    @property
    def umask(self) -> int:
        """The supervisor's umask: what it and its daemons create gets these modes."""
        return 0o077 if self.group is None else 0o007

    def directory_mode(self, shared_writes: bool = False) -> int:
        """0700; shared: 0750, or 0770 where the group's processes create files, with
        the set-group-id bit so that what is created inside keeps the group."""
        if self.group is None:
            return 0o700
        return stat.S_ISGID | (0o770 if shared_writes else 0o750)

    @property
    def file_mode(self) -> int:
        return 0o600 if self.group is None else 0o640

    @property
    def socket_mode(self) -> int:
        """Connecting to a Unix socket takes write permission on it."""
        return 0o600 if self.group is None else 0o660

    def directory(self, path: str, *, shared_writes: bool = False) -> None:
        """Create ``path`` (and its parents) or take it over: this user's, with this
        access's mode and group. WorkdirError when it is not a directory of this user's."""
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise WorkdirError(f"{path} is not a directory (a link or a file is there); remove it "
                               "or choose another --workdir")
        if info.st_uid != os.geteuid():
            raise WorkdirError(f"{path} belongs to uid {info.st_uid}, not to you: another user could read "
                               "or replace what the cluster keeps there; remove it or choose another --workdir")
        self.apply(path, self.directory_mode(shared_writes))

    def apply(self, path: str, mode: int) -> None:
        """Give ``path`` (this user's, not a link) ``mode`` and, when shared, the group."""
        gid = self.gid
        if gid is not None:
            os.chown(path, -1, gid, follow_symlinks=False)
        os.chmod(path, mode)

    def file(self, path: str) -> None:
        """``path`` exists or is created empty, with the file mode."""
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, self.file_mode))
        self.apply(path, self.file_mode)


OWNER_ONLY = Access()

__all__ = ["OWNER_ONLY", "Access"]
