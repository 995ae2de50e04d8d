"""A pyarrow filesystem confined to one root: the only way operations touch files.

Exports, backups, loads and restores open every file through a :class:`Rooted`, which
checks each path before it is used: lexically (``..`` cannot climb out) and, on the
local filesystem, after resolving symlinks (a link inside the root that leads outside
is refused too). Object stores have no symlinks, so there the lexical check is all.

What this does not cover: another local user swapping a checked folder for a symlink
between the check and the write. Roots writable by untrusted users are not supported.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any

from fluid_core.errors import FluidError


class OutsideRoot(FluidError, ValueError):
    """A path that would lead outside the root of an export, backup, load or restore."""


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class Rooted:
    """``fs`` seen through ``root``: ``Rooted(fs, "/exports/x").path("a/b.npy")``.

    Offers the filesystem methods the formats use, each checking its path first.
    """

    def __init__(self, fs: Any, root: str, *, what: str = "the root") -> None:
        from pyarrow import fs as pafs  # noqa: PLC0415

        self.fs = fs
        self.root = posixpath.normpath(root)
        self.what = what
        self._local = isinstance(fs, pafs.LocalFileSystem)
        self._real_root = os.path.realpath(self.root) if self._local else self.root

    def path(self, relative: str) -> str:
        """``relative`` under the root, checked."""
        return self.check(posixpath.join(self.root, relative))

    def check(self, path: str) -> str:
        """``path`` (normalised) when it stays inside the root; else :class:`OutsideRoot`."""
        normal = posixpath.normpath(path)
        if not _inside(normal, self.root):
            raise OutsideRoot(f"{path} is outside {self.what} {self.root}; nothing is written or read there")
        if self._local:
            real = os.path.realpath(normal)
            if not _inside(real, self._real_root):
                raise OutsideRoot(f"{path} leads to {real} through a symbolic link, outside {self.what} "
                                  f"{self.root}; nothing is written or read there (point the operation at "
                                  "the link's target instead)")
        return normal

    # -- the filesystem methods of formats.py, checked --------------------------------

    def open_output_stream(self, path: str) -> Any:
        return self.fs.open_output_stream(self.check(path))

    def open_input_file(self, path: str) -> Any:
        return self.fs.open_input_file(self.check(path))

    def create_dir(self, path: str, recursive: bool = True) -> None:
        self.fs.create_dir(self.check(path), recursive=recursive)

    def get_file_info(self, what: Any) -> Any:
        if isinstance(what, str):
            return self.fs.get_file_info(self.check(what))
        return self.fs.get_file_info(what)  # a FileSelector: the caller checks what it finds


__all__ = ["OutsideRoot", "Rooted"]
