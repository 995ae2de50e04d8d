"""The argv and environment of etcd and vineyardd.

These two functions are the only place that knows the daemons' flags: the local
cluster runs exactly what they return, and the Kubernetes engine writes the same
argv into its StatefulSets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vineyard_runtime.quantity import format_bytes
from vineyard_runtime.spec import EtcdSpec, WorkerSpec


@dataclass(frozen=True)
class Command:
    """A program invocation: argv (program first) and the environment it adds."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


#: vineyardd's ``--etcd_cmd``: a path that cannot exist (/dev/null is no folder). A
#: vineyardd 0.24.2 that cannot reach its etcd for 5 s launches an etcd of its own when
#: it finds one (the project image ships etcd): a private cluster listening on every
#: address, whose objects no other node sees, and which later aborts it. With this path
#: it exits instead ("The etcd binary ... does not exist"), and is started again.
NO_PRIVATE_ETCD = "/dev/null/no-private-etcd"


def vineyardd_command(spec: WorkerSpec, binary: str = "vineyardd") -> Command:
    """Return the vineyardd invocation for ``spec``.

    ``MY_NODE_NAME``/``MY_HOST_NAME`` are set when the spec names them; on
    Kubernetes they come from the downward API instead.
    """
    argv = [
        binary,
        "--socket", spec.socket,
        "--size", format_bytes(spec.size_bytes),
        "--meta", "etcd",
        "--etcd_endpoint", spec.etcd_endpoint,
        "--etcd_prefix", spec.etcd_prefix,
        "--etcd_cmd", NO_PRIVATE_ETCD,
        "--rpc_socket_port", str(spec.rpc_port),
        f"--compression={'true' if spec.compression else 'false'}",
    ]
    if spec.reserve_memory:
        argv.append("--reserve_memory")
    if spec.metrics:
        argv.append("--metrics")
    if spec.spill_path:
        argv += [
            "--spill_path", spec.spill_path,
            "--spill_lower_rate", repr(spec.spill_lower_rate),
            "--spill_upper_rate", repr(spec.spill_upper_rate),
        ]
    # its log to stderr (the node's log file, or the pod's log), not glog's files in /tmp,
    # a few per start, which nothing removes
    env = {"GLOG_logtostderr": "1", **spec.extra_env}
    if spec.node_name:
        env["MY_NODE_NAME"] = spec.node_name
    if spec.host_name:
        env["MY_HOST_NAME"] = spec.host_name
    return Command(argv=argv, env=env)


def etcd_command(spec: EtcdSpec, binary: str = "etcd") -> Command:
    """Return the invocation of a single-member etcd for ``spec``."""
    argv = [
        binary,
        "--name", spec.name,
        "--data-dir", spec.data_dir,
        "--listen-client-urls", spec.listen_client_url or spec.client_url,
        "--advertise-client-urls", spec.client_url,
        "--listen-peer-urls", spec.listen_peer_url or spec.peer_url,
        "--initial-advertise-peer-urls", spec.peer_url,
        "--initial-cluster", spec.initial_cluster or f"{spec.name}={spec.peer_url}",
        "--initial-cluster-state", "new",
        "--log-level", "warn",
        "--auto-compaction-mode", "revision",
        "--auto-compaction-retention", str(spec.compaction_retention),
    ]
    if spec.no_fsync:
        argv.append("--unsafe-no-fsync")
    return Command(argv=argv, env={})
