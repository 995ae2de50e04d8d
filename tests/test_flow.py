"""Data operations and DataFlow on a real local cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
try:
    import torch
except ImportError:  # the runs on other Pythons (tests/test_pythons.py) install no torch
    torch = None

import objects
from support.reading import assert_same
from support.localcluster import cluster_pids, wait_gone
from support.waiting import wait_for
from fluid_core.flow import FlowInvalid, LocalRunner
from fluid_core.models import parse
from fluid_core.sdk import Dataset, SdkError
from vineyard_runtime.local import LocalCluster
from vineyard_runtime.local.cluster import is_running
from vineyard_runtime.local.layout import Layout
from vineyard_runtime.local.state import read_state
from vineyard_runtime.plumbing.processes import is_alive

STEPS = os.path.join(os.path.dirname(__file__), "flow_steps.py")
API = "data.fluid.io/v1alpha1"


def dataset(name: str) -> dict:
    return {"apiVersion": API, "kind": "Dataset", "metadata": {"name": name}, "spec": {}}


def op(kind: str, name: str, ds: str, after: tuple[str, str] | None = None, affinity: str | None = None,
       **spec: object) -> dict:
    body: dict = {"dataset": {"name": ds}, **spec}
    if after:
        body["runAfter"] = {"kind": after[0], "name": after[1]}
        if affinity:
            body["runAfter"]["affinityStrategy"] = {"policy": affinity}
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": body}


def process(name: str, ds: str, function: str, after=None, affinity="Require", **spec) -> dict:
    return op("DataProcess", name, ds, after, affinity, processor={"function": f"{STEPS}:{function}"}, **spec)


def run(cluster, documents: list[dict], **kwargs) -> dict:
    runs = LocalRunner(cluster, [parse(d) for d in documents], **kwargs).run(timeout=120)
    return {r.name: r for r in runs}


@pytest.fixture
def store(shared_cluster):
    with objects.connect(shared_cluster.nodes[0].socket) as connected:
        yield connected


def test_three_step_flow_follows_its_predecessors_node_and_reads_nothing_remotely(shared_cluster, tmp_path, store):
    np.save(tmp_path / "nums.npy", np.arange(1000, dtype=np.int64))
    runs = run(shared_cluster, [
        dataset("chain"),
        op("DataLoad", "load", "chain", target=[{"path": str(tmp_path / "nums.npy")}]),
        process("double", "chain", "double", after=("DataLoad", "load"), inputs=["nums"]),
        process("total", "chain", "total", after=("DataProcess", "double"), inputs=["doubled"]),
    ])
    assert [r.phase for r in runs.values()] == ["Complete"] * 3
    assert runs["double"].node == runs["load"].node == runs["total"].node
    for name in ("double", "total"):
        assert runs[name].stats["remote_reads"] == 0 and runs[name].stats["local_reads"] >= 1
        required = runs[name].status()["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert required["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [runs["load"].node]
    assert store.get("default/chain/total") == {"sum": float(np.arange(1000).sum() * 2)}
    store.delete_many(prefix="default/chain/")


def test_inputs_pull_a_step_to_the_node_holding_them(shared_cluster):
    holder = shared_cluster.nodes[2]
    with objects.connect(holder.socket) as remote:
        remote.put(np.arange(50), name="default/pull/nums", replace=True)
        runs = run(shared_cluster, [dataset("pull"), process("double", "pull", "double", inputs=["nums"])])
        assert runs["double"].node == holder.name and runs["double"].stats["remote_reads"] == 0
        remote.delete_many(prefix="default/pull/")


def test_a_failed_step_fails_its_successors_and_runs_nothing_more(shared_cluster, store):
    runs = run(shared_cluster, [
        dataset("boom"),
        process("explode", "boom", "explode"),
        process("after", "boom", "total", after=("DataProcess", "explode")),
    ])
    assert runs["explode"].phase == "Failed"
    assert "RuntimeError: the model diverged" in runs["explode"].message
    with open(runs["explode"].log) as log:
        assert "about to fail on" in log.read()
    assert runs["after"].phase == "Failed" and runs["after"].runs == 0
    assert "DataProcess/explode failed; nothing was run" in runs["after"].message
    assert store.list(prefix="default/boom/") == []


def test_bad_flows_are_rejected_before_anything_runs(shared_cluster, tmp_path, store):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    documents = [
        dataset("bad"),
        op("DataLoad", "load", "bad", target=[{"path": str(tmp_path / "missing.parquet")}]),
        op("DataProcess", "fn", "bad", processor={"function": "no_such_module_here:go"}),
        op("DataMigrate", "out", "bad", **{"from": {"dataset": {"name": "bad"}},
                                            "to": {"externalStorage": {"uri": "/proc/forbidden/x"}}}),
        process("a", "bad", "double", after=("DataProcess", "b")),
        process("b", "bad", "double", after=("DataProcess", "a")),
        process("lost", "bad", "double", after=("DataLoad", "nowhere")),
        process("orphan", "nodataset", "double"),
    ]
    with pytest.raises(FlowInvalid) as caught:
        LocalRunner(shared_cluster, [parse(d) for d in documents])
    where = {w: m for w, m in caught.value.problems}
    assert "does not exist" in where["DataLoad/load: spec.target[0].path"]
    assert "no_such_module_here" in where["DataProcess/fn: spec.processor.function"]
    assert "not writable" in where["DataMigrate/out: spec.to.externalStorage.uri"]
    assert "no DataLoad 'nowhere'" in where["DataProcess/lost: spec.runAfter"]
    assert "no Dataset default/nodataset" in where["DataProcess/orphan: spec.dataset.name"]
    assert any("cycle" in m for m in where.values())
    assert store.list(prefix="default/bad/") == []
    with pytest.raises(Exception, match="not a cron expression"):
        parse(op("DataLoad", "c", "bad", policy="Cron", schedule="every day", target=[{"path": "/"}]))


def every_type() -> dict:
    frame = pd.DataFrame({"i": [1, 2, None], "s": ["a", None, "c"], "when": pd.date_range("2026-01-01", periods=3, tz="UTC"),
                          "cat": pd.Categorical(["x", "y", "x"])}, index=pd.Index([10, 20, 30], name="key"))
    frame["i"] = frame["i"].astype("Int64")
    table = pa.table({"a": [1, 2], "b": [["x"], ["y", "z"]]})
    return {
        "array": np.arange(12, dtype=np.float32).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6).reshape(2, 3)),
        "structured": np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
        "table": table, "batch": table.to_batches()[0], "arrow-array": pa.array([1, None, 3]),
        "chunked": pa.chunked_array([[1, 2], [3]]),
        "frame": frame, "series": pd.Series([1.5, 2.5], name="price"),
        **({"tensor": torch.arange(6, dtype=torch.float16).reshape(2, 3), "bf16": torch.ones(4, dtype=torch.bfloat16)}
           if torch is not None else {}),
        "nested": {"w": np.ones(3), "meta": {"epochs": 3, "tags": ["a", "b"], "pair": (1, "x")}, 7: None},
        "scalar": 42,
    }


def test_backup_then_restore_round_trips_every_type(shared_cluster, tmp_path, store):
    values = every_type()
    for key, value in values.items():
        store.put(value, name=f"default/vault/{key}", labels={"owner": "team-a"}, replace=True)
    types = {ref.name: ref.typename for ref in store.list(prefix="default/vault/")}
    runs = run(shared_cluster, [dataset("vault"), op("DataBackup", "save", "vault", backupPath=str(tmp_path / "b"))])
    assert runs["save"].phase == "Complete", runs["save"].message
    assert store.delete_many(prefix="default/vault/") == len(values)
    runs = run(shared_cluster, [dataset("vault"), op("DataLoad", "restore", "vault",
                                                     target=[{"path": str(tmp_path / "b")}])])
    assert runs["restore"].phase == "Complete", runs["restore"].message
    for key, value in values.items():
        ref = store.info(f"default/vault/{key}")
        assert ref.labels == {"owner": "team-a"} and ref.typename == types[ref.name]
        assert_same(value, store.get(ref))
    store.delete_many(prefix="default/vault/")


def test_a_dataset_binds_by_restoring_its_data_restore_location(shared_cluster, tmp_path, store):
    """Fluid's ``dataRestoreLocation`` (``local://`` here): the backup is restored before
    the flow's operations run; a dataset holding objects already is left alone; a
    location without a backup is refused before anything runs."""
    store.put(np.arange(5.0), name="default/kept/nums", replace=True)
    runs = run(shared_cluster, [dataset("kept"), op("DataBackup", "save", "kept", backupPath=f"local://{tmp_path / 'b'}")])
    assert runs["save"].phase == "Complete", runs["save"].message
    restored = {**dataset("again"), "spec": {"dataRestoreLocation": {"path": f"local://{tmp_path / 'b'}"}}}
    runner = LocalRunner(shared_cluster, [parse(d) for d in [restored, process("use", "again", "double")]])
    (use,) = runner.run(timeout=60)
    assert runner.restored == {"default/again": f"restored 1 object(s) from local://{tmp_path / 'b'}"}
    assert use.phase == "Complete", use.message  # it read the restored object
    np.testing.assert_array_equal(store.get("default/again/doubled"), np.arange(5.0) * 2)
    second = LocalRunner(shared_cluster, [parse(restored)])
    second.run(timeout=60)
    assert second.restored["default/again"] == "nothing restored: the dataset holds 2 object(s) already"
    empty = {**dataset("nowhere"), "spec": {"dataRestoreLocation": {"path": str(tmp_path / "none")}}}
    with pytest.raises(FlowInvalid, match=r"Dataset/nowhere: spec.dataRestoreLocation.path: .* does not exist"):
        LocalRunner(shared_cluster, [parse(empty)])
    # the operator's restore Job runs `fluidv op restore` in its pod: the same, as a command
    command = [sys.executable, "-m", "fluid_core.cli", "op", "restore", "third", "--path", str(tmp_path / "b")]
    env = {**os.environ, "VINEYARD_IPC_SOCKET": shared_cluster.nodes[2].socket}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and "restored 1 object(s)" in done.stdout, done.stderr
    np.testing.assert_array_equal(store.get("default/third/nums"), np.arange(5.0))
    refused = subprocess.run(command[:5] + ["fourth", "--path", str(tmp_path)], capture_output=True, text=True,
                             timeout=120, env=env)
    assert refused.returncode == 1 and "holds no backup (fluidv-backup.json missing)" in refused.stderr
    assert not store.list(prefix="default/fourth/")
    store.delete_many(prefix="default/third/")
    pvc = {**dataset("claim"), "spec": {"dataRestoreLocation": {"path": "pvc://backups/sub"}}}
    with pytest.raises(FlowInvalid, match="read inside the Kubernetes cluster"):
        LocalRunner(shared_cluster, [parse(pvc)])
    for prefix in ("default/kept/", "default/again/"):
        store.delete_many(prefix=prefix)


def test_migrate_out_to_files_and_back_in(shared_cluster, tmp_path, store):
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]})
    store.put(frame, name="default/mig/tables/t", replace=True)
    store.put(np.eye(3), name="default/mig/eye", replace=True)
    out = tmp_path / "export"
    runs = run(shared_cluster, [dataset("mig"), op("DataMigrate", "out", "mig", **{
        "from": {"dataset": {"name": "mig"}}, "to": {"externalStorage": {"uri": f"file://{out}"}}})])
    assert runs["out"].phase == "Complete", runs["out"].message
    assert (out / "tables" / "t.parquet").exists() and (out / "eye.npy").exists()
    np.testing.assert_array_equal(np.load(out / "eye.npy"), np.eye(3))
    runs = run(shared_cluster, [dataset("mig"), op("DataMigrate", "in", "mig", **{
        "from": {"externalStorage": {"uri": str(out)}}, "to": {"dataset": {"name": "mig", "path": "/copy"}}})])
    assert runs["in"].phase == "Complete", runs["in"].message
    assert store.get("default/mig/copy/tables/t").to_pandas()["y"].tolist() == ["a", "b"]
    np.testing.assert_array_equal(store.get("default/mig/copy/eye"), np.eye(3))
    store.delete_many(prefix="default/mig/")


def test_parallel_migration_moves_every_file_and_names_the_one_that_fails(shared_cluster, tmp_path, store):
    for index in range(24):
        store.put(np.full(1000, float(index)), name=f"default/par/part-{index:02d}", replace=True)
    out = tmp_path / "export"
    runs = run(shared_cluster, [dataset("par"), op("DataMigrate", "out", "par", parallelism=4, **{
        "from": {"dataset": {"name": "par"}}, "to": {"externalStorage": {"uri": str(out)}}})])
    assert runs["out"].phase == "Complete" and "wrote 24 object(s)" in runs["out"].message
    (out / "broken.npy").write_bytes(b"not an array")
    runs = run(shared_cluster, [dataset("par"), op("DataMigrate", "in", "par", parallelism=4, **{
        "from": {"externalStorage": {"uri": str(out)}}, "to": {"dataset": {"name": "par", "path": "/copy"}}})])
    assert runs["in"].phase == "Failed" and "broken.npy" in runs["in"].message
    (out / "broken.npy").unlink()
    runs = run(shared_cluster, [dataset("par"), op("DataMigrate", "again", "par", parallelism=4, **{
        "from": {"externalStorage": {"uri": str(out)}}, "to": {"dataset": {"name": "par", "path": "/copy"}}})])
    assert runs["again"].phase == "Complete" and "read 24 object(s)" in runs["again"].message
    for index in range(24):
        assert store.get(f"default/par/copy/part-{index:02d}")[0] == float(index)
    store.delete_many(prefix="default/par/")


def test_cron_fires_on_schedule(shared_cluster, store):
    """A schedule of every second fires again and again, never twice in one second, and
    each firing runs the step once (stopped after the third: no clock to race)."""
    fired_at: list[str | None] = []
    runner = LocalRunner(shared_cluster, [parse(d) for d in [
        dataset("tick"), process("tick", "tick", "count_runs", policy="Cron", schedule="* * * * * */1")]])

    def launched(runs) -> None:
        if runs[0].runs > len(fired_at):
            fired_at.append(runs[0].last_schedule_time)
            if runs[0].runs == 3:
                runner.stop()

    runner.on_change = launched
    runs = runner.run(timeout=120)
    assert runs[0].runs == 3 == store.get("default/tick/count"), runs[0].message
    assert len(fired_at) == 3 and fired_at == sorted(set(fired_at)), f"each in a second of its own: {fired_at}"
    store.delete_many(prefix="default/tick/")


def test_on_event_fires_once_per_matching_put(shared_cluster, store):
    """``react`` runs once per put under incoming/; a put elsewhere fires nothing. That
    nothing is proven by ``probe`` (watching that other name, polled in the same loop):
    once its run is over, react has read the directory after the put too, and would have
    fired (it waits no debounce)."""
    runner = LocalRunner(shared_cluster, [parse(d) for d in [
        dataset("watch"),
        process("react", "watch", "count_runs", policy="OnEvent",
                onEvent={"objectPattern": "incoming/*", "debounceSeconds": 0}),
        op("DataProcess", "probe", "watch", processor={"function": f"{STEPS}:slow", "params": {"seconds": "0"}},
           policy="OnEvent", onEvent={"objectPattern": "unrelated", "debounceSeconds": 0.5})]])
    ops = {r.name: r for r in runner.operations}

    def ran(name: str, times: int) -> bool:
        return ops[name].runs == times and ops[name].phase == "Complete"

    thread = threading.Thread(target=runner.run, kwargs={"timeout": 300})
    thread.start()
    try:
        assert runner.watching.wait(60)
        store.put(np.zeros(3), name="default/watch/incoming/a")
        wait_for(lambda: ran("react", 1), timeout=60, message="the first put ran react")
        store.put(np.zeros(3), name="default/watch/unrelated")
        wait_for(lambda: ran("probe", 1), timeout=60, message="the other put ran probe")
        assert ops["react"].runs == 1, "a put outside incoming/ fired react"
        store.put(np.ones(3), name="default/watch/incoming/a", replace=True)  # replaced: fires again
        wait_for(lambda: ran("react", 2), timeout=60, message="the replacing put ran react again")
    finally:
        runner.stop()
        thread.join(60)
    assert not thread.is_alive()
    assert ops["react"].runs == 2 and ops["probe"].runs == 1
    assert store.get("default/watch/count") == 2
    store.delete_many(prefix="default/watch/")


def test_ttl_removes_exactly_the_runs_intermediates(shared_cluster, store):
    store.put(np.zeros(2), name="default/ttl/before", replace=True)
    runs = run(shared_cluster, [dataset("ttl"), process("make", "ttl", "scratch_then_result", outputs=["result"],
                                                        ttlSecondsAfterFinished=0)], run_id="ttl-run")
    assert runs["make"].phase == "Complete" and runs["make"].removed
    assert sorted(r.name for r in store.list(prefix="default/ttl/")) == ["default/ttl/before", "default/ttl/result"]
    store.delete_many(prefix="default/ttl/")


def test_sdk_flow_runs_and_reports(shared_cluster, store):
    import flow_steps

    store.put(np.arange(10), name="default/sdk/nums", replace=True)
    flow = (Dataset("sdk", backend=shared_cluster)
            .process(flow_steps.double, inputs=["nums"], name="double")
            .process(flow_steps.total, inputs=["doubled"], outputs=["total"], name="total"))
    assert [r["kind"] for r in flow.resources()] == ["Dataset", "DataProcess", "DataProcess"]
    assert flow.resources()[2]["spec"]["runAfter"]["affinityStrategy"] == {"policy": "Require"}
    status = flow.run("sdk-run").wait(timeout=120)
    assert [s["phase"] for s in status] == ["Complete", "Complete"]
    assert store.get("default/sdk/total") == {"sum": 90.0}
    with pytest.raises(SdkError, match="module-level function"):
        Dataset("sdk", backend=shared_cluster).process(lambda ctx: None)
    store.delete_many(prefix="default/sdk/")


@pytest.fixture
def run_workdir(tmp_path):
    """The workdir of ``fluidv run``'s local cluster, which runs detached: stopped (and
    whatever of it survives killed, by pid) whatever the test did."""
    workdir = tmp_path / "wd"
    try:
        yield workdir
    finally:
        state = read_state(Layout(str(workdir))) if workdir.exists() else None
        pids = cluster_pids(state) if state is not None else []
        try:
            if is_running(str(workdir)):
                LocalCluster.attach(str(workdir)).stop()
        finally:
            for pid in pids:
                if is_alive(pid):
                    os.kill(pid, signal.SIGKILL)
        assert not wait_gone(pids)


def test_fluidv_run_json_and_rejection(tmp_path, run_workdir):
    np.save(tmp_path / "nums.npy", np.arange(5))
    flow = tmp_path / "flow.yaml"
    import yaml

    flow.write_text(yaml.safe_dump_all([
        dataset("cli"), op("DataLoad", "load", "cli", target=[{"path": str(tmp_path / "nums.npy")}]),
        process("double", "cli", "double", after=("DataLoad", "load"), inputs=["nums"])]))
    command = [sys.executable, "-m", "fluid_core.cli", "run", str(flow), "--json", "--workdir", str(run_workdir),
               "--size", "128Mi", "--nodes", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(r["name"], r["phase"]) for r in report] == [("load", "Complete"), ("double", "Complete")]
    assert report[1]["local_reads"] == 1 and report[1]["remote_reads"] == 0
    flow.write_text(yaml.safe_dump_all([dataset("cli"), process("x", "cli", "double", after=("DataLoad", "gone"))]))
    rejected = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert rejected.returncode == 1
    assert "DataProcess/x: spec.runAfter: no DataLoad 'gone' in this flow" in rejected.stderr
    assert "the flow was rejected before anything ran" in rejected.stderr
    assert "starting a" not in rejected.stdout + rejected.stderr  # no cluster was started for it




def test_the_example_flow_runs_and_keeps_only_its_outputs(shared_cluster, store):
    import yaml

    with open(os.path.join(os.path.dirname(__file__), "..", "examples", "pipeline-flow.yaml")) as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d]
    documents[1]["spec"]["processor"]["params"]["rows"] = "5000"
    runs = run(shared_cluster, documents, run_id="example")
    assert [r.phase for r in runs.values()] == ["Complete"] * 4, [r.message for r in runs.values()]
    assert len({r.node for r in runs.values()}) == 1
    assert sum(r.stats["remote_reads"] for r in runs.values()) == 0
    metrics = store.get("default/transactions/metrics")
    assert metrics["rows"] == 5000 and 0.5 < metrics["accuracy"] <= 1.0
    kept = sorted(r.name for r in store.list(prefix="default/transactions/"))
    assert kept == ["default/transactions/metrics", "default/transactions/model"]  # intermediates removed
    store.delete_many(prefix="default/transactions/")


def test_fluid_script_processor_runs_its_command_on_a_file_of_its_source(shared_cluster, tmp_path):
    out = tmp_path / "script.out"
    source = f'echo "dataset=$FLUID_DATASET" > {out}\necho second line >> {out}\n'
    runs = run(shared_cluster, [dataset("scripted"), op("DataProcess", "sh", "scripted", processor={
        "script": {"command": ["bash"], "source": source}})])
    assert runs["sh"].phase == "Complete", runs["sh"].message
    assert out.read_text() == "dataset=default/scripted\nsecond line\n"
    plain = run(shared_cluster, [dataset("scripted"), op("DataProcess", "sh2", "scripted", processor={
        "script": {"source": f"echo no command >> {out}"}})])  # no command: the file is run by sh
    assert plain["sh2"].phase == "Complete" and out.read_text().endswith("no command\n")


def test_node_selector_picks_the_node_locally(shared_cluster, tmp_path):
    np.save(tmp_path / "few.npy", np.arange(10))
    runs = run(shared_cluster, [dataset("zoned"), op(
        "DataLoad", "in-b", "zoned", target=[{"path": str(tmp_path / "few.npy")}],
        nodeSelector={"topology.kubernetes.io/zone": "b"})])
    assert runs["in-b"].phase == "Complete" and runs["in-b"].node == shared_cluster.nodes[2].name
    nowhere = run(shared_cluster, [dataset("zoned"), op(
        "DataLoad", "in-z", "zoned", target=[{"path": str(tmp_path / "few.npy")}],
        nodeSelector={"topology.kubernetes.io/zone": "z"})])
    assert nowhere["in-z"].phase == "Failed" and "nodeSelector" in nowhere["in-z"].message
    with objects.connect(shared_cluster.nodes[0].socket) as cleanup:
        cleanup.delete_many(prefix="default/zoned/")


def mounted(name: str, *mounts: dict) -> dict:
    return {"apiVersion": API, "kind": "Dataset", "metadata": {"name": name}, "spec": {"mounts": list(mounts)}}


def test_dataload_warms_the_cache_from_the_datasets_mounts(shared_cluster, tmp_path, store):
    source = tmp_path / "ufs"
    (source / "dir").mkdir(parents=True)
    pd.DataFrame({"v": [1, 2, 3]}).to_parquet(source / "a.parquet")
    np.save(source / "dir" / "b.npy", np.arange(4))
    ds = mounted("warm", {"mountPoint": f"local://{source}"})
    first = run(shared_cluster, [ds, op("DataLoad", "all", "warm")])  # no target: the whole dataset
    assert first["all"].phase == "Complete", first["all"].message
    assert "loaded 2 object(s); 0 cached" in first["all"].message
    assert store.get("default/warm/a")["v"].to_pylist() == [1, 2, 3]  # Parquet loads as an Arrow table
    assert store.get("default/warm/dir/b").tolist() == [0, 1, 2, 3]
    again = run(shared_cluster, [ds, op("DataLoad", "again", "warm", target=[{"path": "/"}])])
    assert "loaded 0 object(s); 2 cached already" in again["again"].message
    store.delete("default/warm/dir/b")
    part = run(shared_cluster, [ds, op("DataLoad", "part", "warm", target=[{"path": "/dir/b.npy"}])])
    assert "loaded 1 object(s)" in part["part"].message and store.exists("default/warm/dir/b")
    missing = run(shared_cluster, [ds, op("DataLoad", "missing", "warm", target=[{"path": "/nope"}])])
    assert missing["missing"].phase == "Failed" and "neither cached nor" in missing["missing"].message
    unmounted = mounted("warm", {"name": "m", "mountPoint": f"local://{source}", "path": "/m"})
    with pytest.raises(FlowInvalid, match=r"spec.target\[0\].path: no mount of the dataset holds /elsewhere"):
        run(shared_cluster, [unmounted, op("DataLoad", "nowhere", "warm", target=[{"path": "/elsewhere"}])])
    store.delete_many(prefix="default/warm/")


def test_dataload_replicas_keep_copies_on_further_nodes(shared_cluster, tmp_path, store):
    """``target[].replicas: 2``: the objects are loaded on one node and copied to the
    next best; a target asking for more copies than there are nodes gets one per node."""
    source = tmp_path / "ufs"
    source.mkdir()
    np.save(source / "big.npy", np.arange(1 << 19, dtype=np.float64))  # 4 MiB: held in shared memory
    ds = mounted("copies", {"mountPoint": f"local://{source}"})
    runs = run(shared_cluster, [ds, op("DataLoad", "twice", "copies", target=[{"path": "/big.npy", "replicas": 2}])])
    twice = runs["twice"]
    assert twice.phase == "Complete", twice.message
    entry = store.directory.get("default/copies/big")
    holders = {entry.node}
    for node in shared_cluster.nodes:
        with objects.connect(node.socket) as there:
            if store.directory.etcd.get(store.directory.replica_key(entry.id, there.instance_id)) is not None:
                holders.add(node.name)
    assert len(holders) == 2 and f"copies on {(holders - {entry.node}).pop()} (1)" in twice.message
    every = run(shared_cluster, [ds, op("DataLoad", "every", "copies", target=[{"path": "/", "replicas": 5}])])
    assert every["every"].phase == "Complete" and every["every"].message.count("(1)") == 2
    store.delete_many(prefix="default/copies/")


def test_a_dataload_pod_of_an_indexed_job_makes_its_own_copy(shared_cluster, tmp_path):
    """On Kubernetes copy k of a DataLoad is pod k (``JOB_COMPLETION_INDEX``): it loads
    what is missing, reads the rest onto its node, and skips targets wanting fewer copies."""
    from fluid_core.flow.context import StepContext
    from fluid_core.flow.ops import warm

    source = tmp_path / "ufs"
    source.mkdir()
    np.save(source / "big.npy", np.arange(1 << 19, dtype=np.float64))
    spec = parse(op("DataLoad", "pods", "pods", target=[{"path": "/big.npy", "replicas": 2}])).spec
    mounts = [{"mountPoint": f"local://{source}"}]
    with objects.connect(shared_cluster.nodes[0].socket) as first, objects.connect(shared_cluster.nodes[1].socket) as second:
        pods = [StepContext(first, "default", "pods"), StepContext(second, "default", "pods"),
                StepContext(second, "default", "pods")]
        for index, ctx in enumerate(pods):
            ctx.mounts, ctx.replica_index = mounts, index
        assert warm(pods[0], spec).startswith("loaded 1 object(s)")
        assert warm(pods[1], spec) == f"loaded 0 object(s); 1 cached already; copies on {second.node} (1)"
        assert warm(pods[2], spec) == "loaded 0 object(s); 0 cached already"  # only 2 copies wanted
        entry = first.directory.get("default/pods/big")
        assert first.directory.etcd.get(first.directory.replica_key(entry.id, second.instance_id)) is not None
        first.delete_many(prefix="default/pods/")


def test_dataload_of_named_mounts_and_of_a_dataset_without_mounts(shared_cluster, tmp_path, store):
    for part in ("one", "two"):
        (tmp_path / part).mkdir()
        np.save(tmp_path / part / "x.npy", np.arange(3))
    ds = mounted("multi", {"name": "one", "mountPoint": f"local://{tmp_path / 'one'}"},
                 {"name": "two", "mountPoint": f"local://{tmp_path / 'two'}", "path": "/second"})
    runs = run(shared_cluster, [ds, op("DataLoad", "both", "multi")])
    assert runs["both"].phase == "Complete", runs["both"].message
    assert store.exists("default/multi/one/x") and store.exists("default/multi/second/x")
    store.put(np.arange(2), name="default/bare/kept", replace=True)
    bare = run(shared_cluster, [dataset("bare"), op("DataLoad", "bare", "bare")])
    assert bare["bare"].phase == "Complete" and "1 cached already" in bare["bare"].message
    for prefix in ("default/multi/", "default/bare/"):
        store.delete_many(prefix=prefix)


def test_mount_paths_follow_fluids_rules():
    from fluid_core.models.mounts import MountError, resolve, under

    single = [{"mountPoint": "local:///srv/data"}]
    assert resolve(single, "/a/b.parquet") == ("/srv/data/a/b.parquet", "/a/b.parquet", "/srv/data")
    assert resolve(single, "/") == ("/srv/data", "/", "/srv/data")
    assert resolve(single, "/../../etc/passwd") == ("/srv/data/etc/passwd", "/etc/passwd", "/srv/data")
    named = [{"name": "imgs", "mountPoint": "s3://bucket/imgs"}, {"name": "meta", "mountPoint": "local:///m",
                                                                   "path": "/labels"}]
    assert resolve(named, "/imgs/cat.npy") == ("s3://bucket/imgs/cat.npy", "/imgs/cat.npy", "s3://bucket/imgs")
    assert resolve(named, "/labels/../labels/x") == ("/m/x", "/labels/x", "/m")
    assert under(named, "/") == ["/imgs", "/labels"]
    with pytest.raises(MountError, match="appear at: /imgs, /labels"):
        resolve(named, "/other")
    with pytest.raises(MountError, match="pvc://"):
        resolve([{"mountPoint": "pvc://claim/x"}], "/x")


def test_depend_on_follows_another_operation_than_run_after(shared_cluster, tmp_path):
    np.save(tmp_path / "n.npy", np.arange(3))
    load = [{"path": str(tmp_path / "n.npy")}]
    runs = run(shared_cluster, [
        dataset("follow"),
        op("DataLoad", "first", "follow", target=load, nodeSelector={"topology.kubernetes.io/zone": "b"}),
        op("DataLoad", "second", "follow", after=("DataLoad", "first"), target=load,
           nodeSelector={"topology.kubernetes.io/zone": "a"}),
        {**(third := process("third", "follow", "scratch_then_result")), "spec": {**third["spec"], "runAfter": {
            "kind": "DataLoad", "name": "second", "affinityStrategy": {
                "policy": "Require", "dependOn": {"kind": "DataLoad", "name": "first"}}}}},
    ])
    assert [r.phase for r in runs.values()] == ["Complete"] * 3
    assert runs["first"].node == shared_cluster.nodes[2].name != runs["second"].node
    assert runs["third"].node == runs["first"].node
    with objects.connect(shared_cluster.nodes[0].socket) as cleanup:
        cleanup.delete_many(prefix="default/follow/")
