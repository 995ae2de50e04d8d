"""Fluid's SDK flows (fluid-pysdk's names and arguments) on the local cluster."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import objects
from fluid_core.fluid import (
    ClientConfig,
    FlowFailed,
    FluidClient,
    RuntimeShapeWarning,
    constants,
    make_processor_from_func,
    models,
)
from fluid_core.sdk import SdkError


def count_files(directory):  # runs in the step, from its own source: imports inside
    import os

    print("files:", sum(len(files) for _, _, files in os.walk(directory)))


@pytest.fixture
def client(shared_cluster):
    return FluidClient(ClientConfig(backend=shared_cluster))


def test_fluids_dataflow_example_runs_with_only_the_import_changed(client, shared_cluster, tmp_path):
    ufs = tmp_path / "ufs"
    (ufs / "mydata").mkdir(parents=True)
    np.save(ufs / "mydata" / "x.npy", np.arange(6))
    out = tmp_path / "out.txt"
    client.create_dataset("demo-dataset", mount_name="ufs", mount_point=f"local://{ufs}")
    dataset = client.get_dataset("demo-dataset")
    with pytest.warns(RuntimeShapeWarning, match="not 3 of 1.0 GiB"):  # the cluster given runs 256 MiB nodes
        dataset.bind_runtime(runtime_type=constants.VINEYARD_RUNTIME_KIND, replicas=3, cache_capacity_GiB=1)
    processor = models.Processor(script=models.ScriptProcessor(
        image="alpine", image_pull_policy="IfNotPresent", image_tag="3.10", command=["sh"],
        source=f'echo "processed $FLUID_DATASET" > {out}'))
    flow = (dataset
            .migrate("/copied", constants.DATA_MIGRATE_DIRECTION_FROM, models.ExternalStorage(uri=str(ufs / "mydata")))
            .preload("/mydata")
            .process(dataset_mountpath="/data", processor=processor)
            .run(run_id="testflow3", ttl_seconds_after_finished=86400))
    flow.wait(timeout_for_each_step=120)
    statuses = flow.get_current_status()
    assert [list(s) for s in statuses] == [["testflow3-step1"], ["testflow3-step2"], ["testflow3-step3"]]
    assert all(next(iter(s.values()))["phase"] == "Complete" for s in statuses)
    assert next(iter(statuses[0].values()))["duration"] != "Unfinished"
    assert out.read_text() == "processed default/demo-dataset\n"
    with objects.connect(shared_cluster.nodes[0].socket) as store:
        assert store.get("default/demo-dataset/copied/x").tolist() == list(range(6))
        assert store.get("default/demo-dataset/mydata/x").tolist() == list(range(6))
    cache = dataset.report_status("cache")
    assert cache["cached"] != "0 B" and cache["cacheCapacity"] and cache["cachedPercentage"].endswith("%")
    assert cache["dataset total size"] == cache["cached"] == "96 B" and cache["dataset file num"] == "2"
    assert dataset.report_status("binding_status")["phase"] == "Bound"
    assert dataset.report_status("mount")[0]["mountPoint"] == f"local://{ufs}"
    dataset.clean_up()
    with objects.connect(shared_cluster.nodes[0].socket) as store:
        assert not store.exists("default/demo-dataset/mydata/x")
    with pytest.raises(SdkError, match="create_dataset"):
        client.get_dataset("demo-dataset")


def test_a_failing_step_stops_wait_with_its_reason(client):
    client.create_dataset("breaks")
    dataset = client.get_dataset("breaks")
    dataset.bind_runtime(replicas=3, cache_capacity_GiB=0.25)  # the shared cluster's shape
    bad = models.Processor(script=models.ScriptProcessor(command=["sh"], source="exit 3"))
    flow = dataset.process(dataset_mountpath="/data", processor=bad).preload("/").run(run_id="breaking")
    with pytest.raises(RuntimeError, match="breaking-step1.*exited with code 3") as failed:  # as fluid-pysdk
        flow.wait(timeout_for_each_step=60)
    assert isinstance(failed.value, FlowFailed) and failed.value.step == "breaking-step1"
    assert failed.value.statuses == flow.get_current_status()
    last = next(iter(flow.get_current_status()[1].values()))
    assert last["phase"] == "Failed"  # its predecessor failed: it never ran


def test_a_function_becomes_a_script_processor(client, tmp_path, monkeypatch):
    """It runs as a script of its own, in a folder of its own that goes when it ends."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # where the step's mktemp makes its folder
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("x")
    processor = make_processor_from_func(count_files, {"directory": str(tmp_path / "d")})
    script = processor.to_dict()["script"]
    assert script["command"] == ["bash"] and script["image"] == "python" and script["imageTag"] == "3.10"
    client.create_dataset("funcs")
    dataset = client.get_dataset("funcs")
    dataset.bind_runtime(replicas=3, cache_capacity_GiB=0.25)  # the shared cluster's shape
    flow = dataset.process(dataset_mountpath="/data", processor=processor).run(run_id="func")
    flow.wait(timeout_for_each_step=60)
    step = flow._handle.runner.operations[0]
    with open(step.log) as log:
        assert "files: 1" in log.read()
    assert list(scratch.iterdir()) == [], "the step's script folder is removed"


def test_fluid_sdk_errors_are_clear(client):
    with pytest.raises(SdkError, match="Vineyard"):
        ClientConfig(runtime_kind="alluxio")
    client.create_dataset("errs")
    with pytest.raises(SdkError, match="runtime_type"):
        client.get_dataset("errs").bind_runtime(runtime_type="jindo")
    with pytest.raises(SdkError, match="migrate_direction"):
        client.get_dataset("errs").migrate("/x", "sideways", models.ExternalStorage(uri="/tmp"))
    with pytest.raises(ValueError, match="mount_name and mount_point"):
        client.create_dataset("half", mount_name="only")


def test_a_local_dataset_is_bound_only_while_its_cluster_runs(make_cluster, monkeypatch, tmp_path):
    monkeypatch.setenv("FLUIDV_HOME", str(tmp_path / "nothing-runs-here"))
    client = FluidClient(ClientConfig())
    client.create_dataset("phases")
    dataset = client.get_dataset("phases")
    unbound = dataset.report_status("binding_status")
    assert unbound == {"phase": "NotBound", "runtimes": []}
    assert "bind_runtime()" in dataset.report_status("full")["conditions"][0]["message"]
    cluster = make_cluster(nodes=2, size="128Mi")
    client = FluidClient(ClientConfig(backend=cluster))
    client.create_dataset("phases")
    dataset = client.get_dataset("phases")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeShapeWarning)
        dataset.bind_runtime(replicas=2, cache_capacity_GiB=0.125)  # its shape: no warning
    full = dataset.report_status("full")
    assert full["phase"] == "Bound"
    assert full["conditions"][0]["status"] == "True" and "2 of 2 node(s) healthy" in full["conditions"][0]["message"]
    cluster.stop()
    full = dataset.report_status("full")
    assert full["phase"] == "NotBound" and full["runtimes"] == []
    assert full["conditions"][0]["status"] == "False"
    assert f"no cluster runs in {cluster.workdir}" in full["conditions"][0]["message"]


def test_bind_runtime_says_when_the_running_cluster_has_another_shape(shared_cluster, monkeypatch):
    monkeypatch.setenv("FLUIDV_HOME", shared_cluster.workdir)  # the cluster "that runs"
    client = FluidClient(ClientConfig())
    client.create_dataset("shape")
    with pytest.warns(RuntimeShapeWarning, match=r"uses the cluster that runs in .*: 3 node\(s\) of 256.0 MiB, "
                                                  r"not 2 of 4.0 GiB.*fluidv cluster down --workdir") as seen:
        client.get_dataset("shape").bind_runtime(replicas=2, cache_capacity_GiB=4)
    (shape,) = [w for w in seen if w.category is RuntimeShapeWarning]  # (a GC may add a ResourceWarning)
    assert shape.filename == __file__  # shown at the caller's line
    assert client.backend.workdir == shared_cluster.workdir  # used all the same


def test_fluid_release_note_shorthands(client, tmp_path):
    """Fluid 1.0's announcement: ``load``, ``create_processor``, ``migrate`` without
    external storage, ``process`` without a mount path, ``run()`` without a run id."""
    from fluid_core.fluid import create_processor

    (tmp_path / "ufs" / "data").mkdir(parents=True)
    client.create_dataset("short", mount_name="ufs", mount_point=f"local://{tmp_path / 'ufs'}")
    dataset = client.get_dataset("short")
    flow = (dataset.migrate(path="/data/", migrate_direction=constants.DATA_MIGRATE_DIRECTION_FROM)
            .load("/data/")
            .process(processor=create_processor(count_files, {"directory": str(tmp_path)}))
            .migrate(path="/data/", migrate_direction=constants.DATA_MIGRATE_DIRECTION_TO))
    ops = flow.flow_ops
    assert ops[0]["spec"]["from"] == {"externalStorage": {"uri": str(tmp_path / "ufs" / "data")}}
    assert ops[1] == {"kind": "DataLoad", "spec": {"dataset": {"name": "short", "namespace": "default"},
                                                   "loadMetadata": False, "target": [{"path": "/data/", "replicas": 1}]}}
    assert ops[2]["spec"]["dataset"]["mountPath"] == "/data"
    assert ops[3]["spec"]["to"] == {"externalStorage": {"uri": str(tmp_path / "ufs")}}  # keys start with data/
    run = flow.run()
    assert run.run_id.startswith("short-") and len(run.run_id) == len("short-") + 8
    run.wait(timeout_for_each_step=120)
    with pytest.raises(SdkError, match="has none: create it with mount_point"):
        client.create_dataset("bare")
        client.get_dataset("bare").migrate("/x", constants.DATA_MIGRATE_DIRECTION_TO)
    client.create_dataset("deep", mount_name="ufs", mount_point=f"local://{tmp_path}", mount_path="/ufs")
    with pytest.raises(SdkError, match="mount at /"):
        client.get_dataset("deep").migrate("/ufs/data", constants.DATA_MIGRATE_DIRECTION_TO)
    with pytest.raises(SdkError, match="needs a processor"):
        dataset.process()
