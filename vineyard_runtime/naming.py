"""Names derived from user names: label keys and values, and object names, that always fit
Kubernetes' limits (the local cluster labels its nodes and runs with the same rules)."""

from __future__ import annotations

import hashlib
import re

MAX_VALUE = 63
MAX_NAME = 63
_INVALID = re.compile(r"[^A-Za-z0-9._-]")


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    head = text[: limit - 9].rstrip("-_.")
    return f"{head}-{digest}"


#: names whose controller labels its pods ``<name>-<10-character hash>`` (StatefulSets,
#: DaemonSets) or appends 11 characters (CronJobs) stay within this
MAX_OWNER_NAME = 52


def derived_name(name: str, suffix: str, limit: int = MAX_OWNER_NAME) -> str:
    """``<name><suffix>`` when it fits ``limit``; otherwise a head of ``name``, a hash of
    all of it, then ``suffix``, so that two long names never share a derived one."""
    if len(name) + len(suffix) <= limit:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    head = name[: max(0, limit - len(suffix) - len(digest) - 1)].rstrip("-.")
    return f"{head}-{digest}{suffix}" if head else f"{digest}{suffix}"


def safe_value(text: str) -> str:
    """A label value for ``text``: at most 63 characters, starting and ending alphanumeric;
    longer values keep a readable head and a hash of the whole."""
    cleaned = _INVALID.sub("-", text).strip("-_.")
    return _shorten(cleaned, MAX_VALUE).strip("-_.")


def safe_key(prefix: str, name: str) -> str:
    """A label key ``prefix/name`` whose name part is at most 63 characters."""
    cleaned = _INVALID.sub("-", name).strip("-_.")
    return f"{prefix}/{_shorten(cleaned, MAX_NAME)}"


def cache_node_label(namespace: str, name: str) -> str:
    """Fluid's label on nodes that cache dataset ``namespace/name``."""
    return safe_key("fluid.io", f"s-{namespace}-{name}")


def vineyard_cache_node_label(namespace: str, name: str) -> str:
    """The runtime-typed form of :func:`cache_node_label`."""
    return safe_key("fluid.io", f"s-vineyard-{namespace}-{name}")


#: The label the NetworkPolicy of runtime ``<value>`` admits to its etcd and RPC ports:
#: the runtime's own pods carry it, and the webhook gives it to pods that mount the
#: runtime's dataset; the webhook refuses it on any other pod.
PEER_LABEL = "fluid.io/vineyard-peer"


#: what a runtime's workloads append to its name (Fluid's names)
MASTER, WORKER, BRIDGE = "-master", "-worker", "-fuse"


def runtime_workloads(name: str) -> dict[str, str]:
    """The StatefulSets (master, workers) and the DaemonSet (bridge) of runtime ``name``,
    by their names."""
    return {derived_name(name, MASTER): "StatefulSet", derived_name(name, WORKER): "StatefulSet",
            derived_name(name, BRIDGE): "DaemonSet"}


def fuse_node_label(namespace: str, name: str) -> str:
    """Nodes labelled with this key (value ``true``) run the dataset's client bridge."""
    return safe_key("fluid.io", f"f-{namespace}-{name}")
