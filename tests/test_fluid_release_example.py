"""Fluid 1.0's announcement flow on the operator, against a real control plane.

The block of that flow in docs/fluid-sdk.md is pasted into a script with one change, the one its
first comment names for Kubernetes (``ClientConfig(kube_config_file=...)``), and run with
``python``: it binds a VineyardRuntime, and the operator runs the four steps as Jobs that
KWOK completes. (Locally the same block runs in ``tests/test_readme.py``.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from control_plane import ControlPlane, OperatorProcess, project_crds

from fluid_core.kube import KubeClient, Ref
from vineyard_runtime.plumbing.ports import free_ports

API = "data.fluid.io/v1alpha1"
NS = "default"
SDK_PAGE = Path(__file__).resolve().parent.parent / "docs" / "fluid-sdk.md"


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    with ControlPlane(tmp_path_factory.mktemp("control-plane"), nodes=3, crds=project_crds()) as plane:
        yield plane


@pytest.fixture(scope="module")
def operator(control_plane):
    """The operator, told (as docs/fluid-sdk.md says a platform engineer would) that the nodes'
    data may live under ``/srv``: the block's ``local:///srv/mnist`` is a node folder."""
    from fluid_core.operator.certs import self_signed

    tls = self_signed(["127.0.0.1"], control_plane.workdir / "webhook")
    policy = control_plane.workdir / "policy.yaml"
    policy.write_text("hostPathRoots: [/srv, /mnt]\n")
    running = OperatorProcess(control_plane, NS, tls, free_ports(1)[0], policy=policy)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def release_block() -> str:
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", SDK_PAGE.read_text(), flags=re.S)
                if '.load("/data/1.txt")' in b]
    return block


def test_the_fluid_release_note_flow_runs_on_the_operator(control_plane, operator, tmp_path):
    script = tmp_path / "release.py"
    pasted = release_block().replace("ClientConfig()", f"ClientConfig(kube_config_file={str(control_plane.kubeconfig)!r})")
    script.write_text(pasted + "print('run:', run.run_id)\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)})
    assert done.returncode == 0, done.stderr[-3000:] + control_plane.log_tail("operator")
    run_id = done.stdout.split("run: ")[-1].strip()
    assert re.fullmatch(r"mnist-[0-9a-f]{8}", run_id), done.stdout
    kube = KubeClient(control_plane.api_client())
    steps = [kube.get(Ref(API, kind, NS, f"{run_id}-step{i}"))
             for i, kind in enumerate(["DataMigrate", "DataLoad", "DataProcess", "DataMigrate"], start=1)]
    assert [s["status"]["phase"] for s in steps] == ["Complete"] * 4
    migrate_in, load, process, migrate_out = (s["spec"] for s in steps)
    assert migrate_in["from"] == {"externalStorage": {"uri": "/srv/mnist/data"}}  # the dataset's own mount
    assert migrate_in["to"]["dataset"]["path"] == "/data/"
    assert load["target"] == [{"path": "/data/1.txt", "replicas": 1}]
    assert process["dataset"]["mountPath"] == "/data"
    assert process["processor"]["script"]["command"] == ["bash"]
    assert migrate_out["to"] == {"externalStorage": {"uri": "/srv/mnist"}}
    scripts = kube.get(Ref("v1", "ConfigMap", NS, f"{run_id}-step3-dataprocess-scripts"))
    assert "def train():" in scripts["data"]["preprocess.sh"]  # create_processor(train): the function's source
    job = kube.get(Ref("batch/v1", "Job", NS, f"{run_id}-step3-dataprocess"))
    assert job["status"].get("succeeded") == 1
    assert kube.get(Ref(API, "Dataset", NS, "mnist"))["status"]["phase"] == "Bound"
