"""Fluid's SDK flows (fluid-pysdk's names and arguments) on the local cluster."""

from __future__ import annotations

import numpy as np
import pytest

import objects
from fluid_core.fluid import ClientConfig, FluidClient, constants, make_processor_from_func, models
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
    dataset.bind_runtime()
    bad = models.Processor(script=models.ScriptProcessor(command=["sh"], source="exit 3"))
    flow = dataset.process(dataset_mountpath="/data", processor=bad).preload("/").run(run_id="breaking")
    with pytest.raises(RuntimeError, match="breaking-step1.*exited with code 3"):
        flow.wait(timeout_for_each_step=60)
    last = next(iter(flow.get_current_status()[1].values()))
    assert last["phase"] == "Failed"  # its predecessor failed: it never ran


def test_a_function_becomes_a_script_processor(client, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("x")
    processor = make_processor_from_func(count_files, {"directory": str(tmp_path / "d")})
    script = processor.to_dict()["script"]
    assert script["command"] == ["bash"] and script["image"] == "python" and script["imageTag"] == "3.10"
    client.create_dataset("funcs")
    dataset = client.get_dataset("funcs")
    dataset.bind_runtime()
    flow = dataset.process(dataset_mountpath="/data", processor=processor).run(run_id="func")
    flow.wait(timeout_for_each_step=60)
    step = flow._handle.runner.operations[0]
    with open(step.log) as log:
        assert "files: 1" in log.read()


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
