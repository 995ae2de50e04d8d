"""The Vineyard engine's manifests and the runtime/dataset reconcilers, as plain functions."""

from __future__ import annotations

import kubernetes_validate
import pytest

from fluid_core.models import parse
from fluid_core.reconcilers.dataset import deletion_blockers, reconcile_dataset
from fluid_core.reconcilers.engine import VineyardEngine
from fluid_core.reconcilers.observed import DatasetObserved, RuntimeObserved, Workload
from fluid_core.reconcilers.runtime import reconcile_runtime
from fluid_core.reconcilers.translate import kube_runtime
from vineyard_runtime.daemons import vineyardd_command
from vineyard_runtime.spec import WorkerSpec

KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]


def runtime(spec: dict | None = None, name: str = "demo", namespace: str = "default"):
    return parse({
        "apiVersion": "data.fluid.io/v1alpha1", "kind": "VineyardRuntime",
        "metadata": {"name": name, "namespace": namespace, "uid": "0000-1111"},
        "spec": spec or {},
    })


def dataset(name: str = "demo", modes=("ReadWriteMany",)):
    return parse({"apiVersion": "data.fluid.io/v1alpha1", "kind": "Dataset",
                  "metadata": {"name": name}, "spec": {"accessModes": list(modes)}})


VARIANTS = {
    "default": {},
    "persistent-master": {"master": {"persistence": {"enabled": True, "size": "5Gi"}}},
    "external-etcd": {"master": {"endpoint": {"uri": "http://etcd.infra:2379"}}},
    "spill": {"tieredstore": {"levels": [
        {"mediumtype": "MEM", "quota": "2Gi"},
        {"mediumtype": "SSD", "path": "/mnt/spill", "quota": "50Gi", "high": "0.9", "low": "0.5"}]}},
    "host-network": {"replicas": 5, "worker": {"networkMode": "HostNetwork", "env": {"GLOG_v": "1"},
                                               "nodeSelector": {"pool": "cache"}}},
    "three-masters": {"master": {"replicas": 3}},
}


def engine(variant: str, **kwargs) -> VineyardEngine:
    return VineyardEngine(kube_runtime(runtime(VARIANTS[variant], **kwargs), dataset()))


def by_kind(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''}"
    return found[0]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_manifest_validates_strictly(variant, version):
    for manifest in engine(variant).all_objects():
        kubernetes_validate.validate(manifest, version, strict=True)


def test_long_names_keep_label_values_short():
    long_name = "a" + "b" * 61
    objects = VineyardEngine(kube_runtime(runtime({}, name=long_name, namespace="n" * 50), dataset(long_name))).all_objects()
    for manifest in objects:
        for value in manifest["metadata"]["labels"].values():
            assert len(value) <= 63
        kubernetes_validate.validate(manifest, "1.37.0", strict=True)
    keys = VineyardEngine(kube_runtime(runtime({}, name=long_name, namespace="n" * 50))).node_labels()
    assert all(len(key.split("/", 1)[1]) <= 63 for key in keys)


def test_worker_argv_is_the_local_clusters():
    eng = engine("spill")
    statefulset = by_kind(eng.all_objects(), "StatefulSet", "demo-worker")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == vineyardd_command(eng.rt.worker_spec(), binary="vineyardd").argv
    local = WorkerSpec(size="2Gi", socket="/tmp/x.sock", etcd_endpoint="http://127.0.0.1:1",
                       rpc_port=9600, spill_path="/mnt/spill", spill_lower_rate=0.5, spill_upper_rate=0.9,
                       node_name="node-0", host_name="127.0.0.1")
    local_argv = vineyardd_command(local, binary="vineyardd").argv
    flags = [a for a in container["command"] if a.startswith("--")]
    assert flags == [a for a in local_argv if a.startswith("--")]
    assert container["command"][container["command"].index("--size") + 1] == "2Gi"
    assert container["resources"]["limits"]["memory"] == "2548Mi", "size + 500Mi"
    env = {e["name"]: e for e in container["env"]}
    assert env["MY_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["MY_HOST_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_workers_spread_one_per_node():
    spec = by_kind(engine("default").all_objects(), "StatefulSet", "demo-worker")["spec"]
    term = spec["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_external_etcd_replaces_the_master():
    eng = engine("external-etcd")
    objects = eng.all_objects()
    assert not [o for o in objects if o["metadata"]["name"] == "demo-master"]
    worker = by_kind(objects, "StatefulSet", "demo-worker")["spec"]["template"]["spec"]["containers"][0]
    assert "http://etcd.infra:2379" in worker["command"]
    ports = {p["port"] for rule in by_kind(objects, "NetworkPolicy")["spec"]["ingress"] for p in rule["ports"]}
    assert 2379 not in ports and 9600 in ports
    outcome = reconcile_runtime(eng, RuntimeObserved(), None, now="t")
    assert outcome.status.master_phase == "Ready", "an external master is ready by definition"
    assert "external etcd" in outcome.status.master_persistence


def test_master_persistence_and_its_absence():
    with_pvc = by_kind(engine("persistent-master").all_objects(), "StatefulSet", "demo-master")["spec"]
    assert with_pvc["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    ephemeral = engine("default")
    spec = by_kind(ephemeral.all_objects(), "StatefulSet", "demo-master")["spec"]
    assert spec["template"]["spec"]["volumes"] == [{"name": "etcd-data", "emptyDir": {}}]
    status = reconcile_runtime(ephemeral, RuntimeObserved(), None, now="t").status
    assert status.master_persistence.startswith("emptyDir: metadata is lost")
    # an emptyDir lives no longer than its pod: no write waits for a sync; a volume's does
    assert "--unsafe-no-fsync" in spec["template"]["spec"]["containers"][0]["command"]
    assert "--unsafe-no-fsync" not in with_pvc["template"]["spec"]["containers"][0]["command"]


def test_rpc_conf_lists_every_worker():
    conf = by_kind(engine("host-network").all_objects(), "ConfigMap", "demo-rpc-conf")
    endpoints = conf["data"]["VINEYARD_RPC_ENDPOINT"].split(",")
    assert endpoints == [f"demo-worker-{i}.demo-worker.default:9600" for i in range(5)]


def test_volume_and_bridge():
    objects = engine("default").all_objects()
    pv = by_kind(objects, "PersistentVolume", "default-demo")
    pvc = by_kind(objects, "PersistentVolumeClaim", "demo")
    assert pv["spec"]["claimRef"] == {"namespace": "default", "name": "demo"}
    assert pvc["spec"]["volumeName"] == "default-demo"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "ownerReferences" not in pv["metadata"], "cluster-scoped: deleted explicitly"
    bridge = by_kind(objects, "DaemonSet", "demo-fuse")["spec"]["template"]["spec"]
    assert bridge["nodeSelector"] == {"fluid.io/f-default-demo": "true"}
    assert bridge["containers"][0]["command"][:2] == ["fluidv", "bridge"]
    for manifest in objects:
        if manifest["kind"] != "PersistentVolume":
            assert manifest["metadata"]["ownerReferences"][0]["uid"] == "0000-1111"


def names(objects):
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objects]


def test_runtime_phases_step_by_step():
    eng = VineyardEngine(kube_runtime(runtime({"replicas": 3}), dataset()))
    first = reconcile_runtime(eng, RuntimeObserved(), None, now="t0")
    assert names(first.desired) == ["Service/demo-master", "StatefulSet/demo-master"]
    assert (first.status.master_phase, first.status.worker_phase) == ("NotReady", "NotReady")
    assert not first.ready

    master_up = RuntimeObserved(master=Workload(1, 1))
    second = reconcile_runtime(eng, master_up, first.status, now="t1")
    assert "StatefulSet/demo-worker" in names(second.desired)
    assert "PersistentVolumeClaim/demo" in names(second.desired)
    assert second.status.worker_phase == "NotReady"

    partial = RuntimeObserved(master=Workload(1, 1), workers=Workload(2, 1), bridge=Workload(2, 0))
    third = reconcile_runtime(eng, partial, second.status, now="t2")
    assert third.status.worker_phase == "PartialReady" and third.status.fuse_phase == "NotReady"
    assert (third.status.worker_number_ready, third.status.desired_worker_number_scheduled) == (1, 3)

    ready = RuntimeObserved(master=Workload(1, 1), workers=Workload(3, 3), bridge=Workload(2, 2),
                            worker_nodes=frozenset({"n1", "n2", "n3"}))
    fourth = reconcile_runtime(eng, ready, third.status, now="t3")
    assert fourth.ready and fourth.status.fuse_phase == "Ready"
    conditions = {c.type: c for c in fourth.status.conditions}
    for kind in ("MasterInitialized", "MasterReady", "WorkersInitialized", "WorkersReady", "FusesReady"):
        assert conditions[kind].status == "True", kind
    assert conditions["MasterInitialized"].last_transition_time == "t0", "unchanged status keeps its time"
    assert conditions["WorkersReady"].last_transition_time == "t3"
    assert set(fourth.label_nodes) == {"n1", "n2", "n3"}
    assert fourth.label_nodes["n1"]["fluid.io/s-default-demo"] == "true"


def test_workers_start_one_after_another():
    """The worker StatefulSet grows by one each time all it runs are ready (workers that
    join etcd at once can abort); it shrinks at once, and a worker lost later does not
    shrink it."""
    eng = VineyardEngine(kube_runtime(runtime({"replicas": 3}), dataset()))

    def replicas(workers: Workload | None) -> int:
        outcome = reconcile_runtime(eng, RuntimeObserved(master=Workload(1, 1), workers=workers), None, now="t")
        return by_kind(outcome.desired, "StatefulSet", "demo-worker")["spec"]["replicas"]

    assert replicas(None) == 1, "the first worker alone"
    assert replicas(Workload(1, 0)) == 1, "it is still joining"
    assert replicas(Workload(1, 1)) == 2 and replicas(Workload(2, 1)) == 2
    assert replicas(Workload(2, 2)) == 3 and replicas(Workload(3, 3)) == 3
    assert replicas(Workload(3, 1)) == 3, "a worker restarting later keeps the others"
    assert replicas(Workload(5, 5)) == 3, "scaled down at once"
    assert by_kind(eng.all_objects(), "StatefulSet", "demo-worker")["spec"]["replicas"] == 3, "rendered in full"


def test_same_inputs_same_outputs():
    eng = engine("default")
    observed = RuntimeObserved(master=Workload(1, 1), workers=Workload(1, 1))
    once = reconcile_runtime(eng, observed, None, now="t")
    twice = reconcile_runtime(eng, observed, once.status, now="t-later")
    assert once.desired == twice.desired and once.status == twice.status


def test_master_going_down_keeps_existing_workers():
    eng = engine("default")
    outcome = reconcile_runtime(eng, RuntimeObserved(master=Workload(1, 0), workers=Workload(2, 2)), None, now="t")
    assert "StatefulSet/demo-worker" in names(outcome.desired)
    assert outcome.status.master_phase == "NotReady" and not outcome.ready


def test_a_replaced_master_restarts_the_workers_one_at_a_time():
    eng = engine("default")
    running = RuntimeObserved(master=Workload(1, 1), workers=Workload(2, 2), master_pod="uid-1")
    first = reconcile_runtime(eng, running, None, now="t0")
    assert first.status.master_pod_uid == "uid-1" and first.restart_worker is None, "the first master is no change"
    gone = reconcile_runtime(eng, RuntimeObserved(master=Workload(1, 0), workers=Workload(2, 2),
                                                  stale_workers=("demo-worker-0", "demo-worker-1")),
                             first.status, now="t1")
    assert gone.status.master_pod_uid == "uid-1" and gone.restart_worker is None, "no master: wait for one"
    stale = ("demo-worker-0", "demo-worker-1")
    replaced = reconcile_runtime(eng, RuntimeObserved(master=Workload(1, 1), workers=Workload(2, 2),
                                                      master_pod="uid-2", stale_workers=stale), gone.status, now="t2")
    assert replaced.restart_worker == "demo-worker-0"
    (event,) = [e for e in replaced.events if e[1] == "MasterReplaced"]
    assert event[0] == "Warning" and "start again" in event[2] and "lost" in event[2]
    restarting = reconcile_runtime(eng, RuntimeObserved(master=Workload(1, 1), workers=Workload(2, 1),
                                                        master_pod="uid-2", stale_workers=stale[1:],
                                                        unready_workers=1), replaced.status, now="t3")
    assert restarting.restart_worker is None, "the next waits until the one restarting is ready"
    assert not [e for e in restarting.events if e[1] == "MasterReplaced"], "one event per replacement"
    second = reconcile_runtime(eng, RuntimeObserved(master=Workload(1, 1), workers=Workload(2, 2),
                                                    master_pod="uid-2", stale_workers=stale[1:]),
                               restarting.status, now="t4")
    assert second.restart_worker == "demo-worker-1"
    done = reconcile_runtime(eng, RuntimeObserved(master=Workload(1, 1), workers=Workload(2, 2), master_pod="uid-2"),
                             second.status, now="t5")
    assert done.restart_worker is None


def test_nodes_that_lose_their_worker_lose_the_labels():
    eng = engine("default")
    observed = RuntimeObserved(master=Workload(1, 1), workers=Workload(1, 1),
                               worker_nodes=frozenset({"n2"}), labelled_nodes=frozenset({"n1", "n2"}))
    outcome = reconcile_runtime(eng, observed, None, now="t")
    assert outcome.label_nodes == {"n1": {k: None for k in eng.node_labels()}}


def test_runtime_without_dataset_creates_nothing():
    outcome = reconcile_runtime(engine("default"), RuntimeObserved(dataset_exists=False), None, now="t")
    assert outcome.desired == []
    assert outcome.events and outcome.events[0][1] == "DatasetNotFound"
    ready = {c.type: c for c in outcome.status.conditions}["Ready"]
    assert ready.status == "False" and ready.reason == "DatasetNotFound"


def test_dataset_binds_when_the_runtime_is_ready():
    unbound = reconcile_dataset("demo", "default", DatasetObserved(runtime_exists=True), None, now="t0")
    assert unbound.status.phase == "NotBound" and unbound.status.runtimes == []
    bound = reconcile_dataset("demo", "default", DatasetObserved(runtime_exists=True, runtime_ready=True),
                              unbound.status, now="t1")
    assert bound.status.phase == "Bound"
    assert bound.status.to_dict()["runtimes"] == [{"name": "demo", "namespace": "default",
                                                   "category": "Accelerate", "type": "vineyard"}]
    assert {c.type: c.status for c in bound.status.conditions}["Ready"] == "True"
    # a worker restarting does not unbind it (as in Fluid); the condition says why it is not ready
    restarting = reconcile_dataset("demo", "default", DatasetObserved(runtime_exists=True), bound.status, now="t2")
    assert restarting.status.phase == "Bound" and restarting.status.runtimes == bound.status.runtimes
    ready = {c.type: c for c in restarting.status.conditions}["Ready"]
    assert ready.status == "False" and ready.reason == "RuntimeNotReady"
    gone = reconcile_dataset("demo", "default", DatasetObserved(runtime_exists=False), restarting.status, now="t3")
    assert gone.status.phase == "NotBound" and gone.status.runtimes == []


def test_dataset_deletion_waits_for_users_and_locks():
    assert deletion_blockers({}, DatasetObserved()) == []
    blockers = deletion_blockers({"operationRef": {"DataLoad": "load-1"}},
                                 DatasetObserved(pods_using=("default/trainer-0",)))
    assert "pods still mount it: default/trainer-0" in blockers[0]
    assert "DataLoad load-1" in blockers[1]
