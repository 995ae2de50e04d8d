"""Where a local cluster lives, and the one file through which clients find it.

``fluidv cluster up``, ``fluidv run`` and ``LocalCluster`` keep a cluster in a working
directory: ``--workdir``/``workdir=``, else ``$FLUIDV_HOME``, else ``./.fluidv``. While
it runs, ``<workdir>/vineyard-config.yaml`` says how to reach it (Fluid's format, with
the etcd, the blob token and every node's socket), so ``objects.connect()`` and
``fluidv mount`` find it the same way without a socket path.
"""

from __future__ import annotations

import os

WORKDIR_ENV = "FLUIDV_HOME"
DEFAULT_WORKDIR = ".fluidv"


def default_workdir() -> str:
    """``$FLUIDV_HOME`` when set, else ``./.fluidv`` (absolute)."""
    return os.path.abspath(os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR)


def resolve_workdir(workdir: str | None) -> str:
    """``workdir`` (absolute) when given, else the default one."""
    return os.path.abspath(workdir) if workdir else default_workdir()


def client_config_path(workdir: str) -> str:
    """The config a running cluster publishes in ``workdir`` for its clients."""
    return os.path.join(workdir, "vineyard-config.yaml")


__all__ = ["DEFAULT_WORKDIR", "WORKDIR_ENV", "client_config_path", "default_workdir", "resolve_workdir"]
