"""A dataset's ``mounts``: the storage behind it, and where each mount appears in it.

As in Fluid, a mount's ``path`` is where its ``mountPoint`` shows in the dataset (by
default ``/<name>``, or ``/`` for a single unnamed mount). A dataset path maps to the
objects whose keys are that path without its leading ``/`` and file extension, and to
the files under the matching mount. ``local://`` mount points are local paths; other
schemes are opened with pyarrow (``file://``, ``s3://``, ``hdfs://``, ...).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from fluid_core.errors import FluidError


class MountError(FluidError):
    """A dataset path that no mount of the dataset provides."""


def _clean(path: str) -> str:
    return "/" + posixpath.normpath("/" + (path or "")).strip("/")


def mount_path(mount: Mapping[str, Any], count: int) -> str:
    """Where ``mount`` appears in the dataset (``count``: how many mounts it has)."""
    if mount.get("path"):
        return _clean(str(mount["path"]))
    if mount.get("name") and count > 1:
        return _clean(str(mount["name"]))
    return "/"


def source_of(mount_point: str) -> str:
    """A mount point as something ``formats.filesystem`` opens."""
    if mount_point.startswith("local://"):
        return mount_point[len("local://"):] or "/"
    if mount_point.startswith("pvc://"):
        raise MountError(f"{mount_point}: a pvc:// mount is read inside the Kubernetes cluster, by the "
                         "operation's pod; on the local cluster mount a local:// path or a URI instead")
    return mount_point


def node_paths(mounts: Sequence[Mapping[str, Any]]) -> list[str]:
    """The node directories of the ``local://`` mounts: on Kubernetes, volumes of the
    operations' pods, seen there at the same paths."""
    return [source_of(str(m["mountPoint"])) for m in mounts if str(m.get("mountPoint", "")).startswith("local://")]


def resolve(mounts: Sequence[Mapping[str, Any]], dataset_path: str) -> tuple[str, str, str]:
    """(where the data of ``dataset_path`` is, the dataset path of that place, and the
    root of the mount holding it: nothing outside that root is read for it)."""
    wanted = _clean(dataset_path)
    best: tuple[str, Mapping[str, Any]] | None = None
    for mount in mounts:
        at = mount_path(mount, len(mounts))
        if (wanted == at or wanted.startswith(at.rstrip("/") + "/")) and (best is None or len(at) > len(best[0])):
            best = (at, mount)
    if best is None:
        shown = ", ".join(mount_path(m, len(mounts)) for m in mounts) or "none"
        raise MountError(f"no mount of the dataset holds {wanted} (its mounts appear at: {shown})")
    at, mount = best
    rest = wanted[len(at):].lstrip("/") if at != "/" else wanted.lstrip("/")
    root = source_of(str(mount["mountPoint"])).rstrip("/")
    return (posixpath.join(root, rest) if rest else root or "/"), wanted, root or "/"


def under(mounts: Sequence[Mapping[str, Any]], dataset_path: str) -> list[str]:
    """The dataset paths to read for ``dataset_path``: itself when a mount holds it, else
    every mount that appears below it (``/`` of a dataset with several named mounts)."""
    wanted = _clean(dataset_path)
    paths = [mount_path(m, len(mounts)) for m in mounts]
    if any(wanted == p or wanted.startswith(p.rstrip("/") + "/") for p in paths):
        return [wanted]
    below = sorted(p for p in paths if p.startswith(wanted.rstrip("/") + "/"))
    return below or [wanted]  # nothing below either: resolve() says which mounts there are


def key_prefix(dataset_path: str) -> str:
    """The object-key prefix of a dataset path (``/a/b`` -> ``a/b``)."""
    return _clean(dataset_path).strip("/")
