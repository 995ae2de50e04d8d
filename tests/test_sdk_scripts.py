"""A user's script: a step function and the flow that runs it, in one file run with
``python script.py``; and a failed flow failing that script.

The scripts run as a user runs them, in a process of their own, and the test checks their
exit code and output. How the step loader reads a script (``fluid_core.flow.scripts``) is
checked in this process too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.localcluster import force_stop
from fluid_core.flow.scripts import ScriptError, load_script_function
from fluid_core.sdk import Dataset, FlowFailed, function_reference
from vineyard_runtime.local import LocalCluster
from vineyard_runtime.local.cluster import is_running


def run_script(path: Path, source: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``source`` written to ``path`` and run with ``python path args...`` from its
    folder; a cluster it left running in ``home`` is stopped by pid."""
    path.write_text(textwrap.dedent(source))
    try:
        return subprocess.run([sys.executable, str(path), *args], cwd=path.parent, capture_output=True, text=True,
                              timeout=600, env={**os.environ, "FLUIDV_HOME": str(home)})
    finally:
        if is_running(str(home)):
            force_stop(LocalCluster.attach(str(home)), set())


def test_a_script_with_its_flow_at_top_level_runs_with_python(tmp_path):
    """No ``if __name__ == "__main__":``: the flow and the cluster at top level, the step
    function using a helper and a constant defined after it. The step gets its function
    without running the flow or starting a cluster again."""
    done = run_script(tmp_path / "scale.py", """
        import numpy as np
        import objects
        from fluid_core.sdk import Dataset
        from vineyard_runtime.local import LocalCluster

        def scale(ctx):
            ctx.put("scaled", times(ctx.get("nums")))

        def times(values):
            return values * FACTOR

        FACTOR = 3

        with LocalCluster(nodes=2, size="128Mi") as cluster:
            with objects.connect(cluster.nodes[0].socket) as store:
                store.put(np.arange(4), "default/scripted/nums")
            flow = Dataset("scripted", backend=cluster).process(scale, inputs=["nums"], outputs=["scaled"])
            statuses = flow.run("top-level").wait(timeout=300)
            with objects.connect(cluster.nodes[0].socket) as store:
                print("scaled:", store.get("default/scripted/scaled").tolist())
        print("phases:", [s["phase"] for s in statuses])
        """, tmp_path / "home")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "scaled: [0, 3, 6, 9]" in done.stdout
    assert "phases: ['Complete']" in done.stdout


def test_a_failed_step_fails_the_script_with_its_name_and_log(tmp_path, shared_cluster):
    done = run_script(tmp_path / "breaks.py", f"""
        from fluid_core.sdk import Dataset
        from vineyard_runtime.local import LocalCluster

        def check(ctx):
            raise ValueError("row 7 has no label")

        cluster = LocalCluster.attach({shared_cluster.workdir!r})
        Dataset("breaking", backend=cluster).process(check, name="check").process(check, name="after").run(
            "breaks").wait(timeout=300)
        print("not reached")
        """, tmp_path / "home")
    assert done.returncode == 1
    assert "not reached" not in done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("fluid_core.sdk.FlowFailed: flow breaks failed: DataProcess check failed:"), last
    assert "ValueError: row 7 has no label" in last  # the log's tail


def test_a_script_whose_top_level_fails_in_the_step_says_what_to_do(tmp_path, shared_cluster):
    """The script reads its arguments at top level, before the function: in the step,
    where there are none, that fails, and the step says where and how to fix it."""
    done = run_script(tmp_path / "args.py", f"""
        import sys
        LIMIT = int(sys.argv[1])

        def limited(ctx):
            ctx.put("limit", LIMIT)

        from fluid_core.sdk import Dataset
        from vineyard_runtime.local import LocalCluster
        cluster = LocalCluster.attach({shared_cluster.workdir!r})
        Dataset("args", backend=cluster).process(limited, name="limited").run("args").wait(timeout=300)
        """, tmp_path / "home", "10")
    assert done.returncode == 1
    assert "FlowFailed" in done.stderr
    assert "ran its top level, which failed at line 3: IndexError" in done.stderr
    assert 'if __name__ == "__main__":' in done.stderr


def test_wait_check_false_returns_the_failed_statuses(tmp_path, shared_cluster):
    script = tmp_path / "steps.py"
    script.write_text("def boom(ctx):\n    raise RuntimeError('boom')\n")
    handle = Dataset("nocheck", backend=shared_cluster).process(f"{script}:boom", name="boom").run("nocheck")
    statuses = handle.wait(timeout=120, check=False)
    assert [(s["name"], s["phase"]) for s in statuses] == [("boom", "Failed")]
    with pytest.raises(FlowFailed) as failed:
        handle.wait(timeout=1)
    assert failed.value.step == "boom" and failed.value.kind == "DataProcess"
    assert "RuntimeError: boom" in failed.value.reason and failed.value.statuses == statuses
    assert isinstance(failed.value, RuntimeError)


# -- the loader, in this process ---------------------------------------------------------


def write(path: Path, source: str) -> str:
    path.write_text(textwrap.dedent(source))
    return str(path)


def test_an_unguarded_script_runs_only_up_to_its_definitions(tmp_path):
    marker = tmp_path / "ran"
    path = write(tmp_path / "cut.py", f"""
        SCALE = 2

        def f(x):
            return helper(x) + OFFSET

        def helper(x):
            return x * SCALE

        OFFSET = 1
        open({str(marker)!r}, "w").close()   # what starts the flow: never run for a step
        def g(x):
            return x
        """)
    f = load_script_function(path, "f")
    assert f(5) == 11
    assert not marker.exists()
    assert function_reference(f) == f"{path}:f"  # the step's name of it stays the file's


def test_a_guarded_script_is_imported_whole_and_stops_at_its_flow_run(tmp_path):
    marker = tmp_path / "ran"
    path = write(tmp_path / "guarded.py", f"""
        from fluid_core.sdk import Dataset

        def early(ctx):
            return "early"

        Dataset("x", backend=object()).process(early).run()   # outside the guard
        open({str(marker)!r}, "w").close()

        def late(ctx):
            return "late"

        if __name__ == "__main__":
            open({str(marker)!r}, "w").close()
        """)
    assert load_script_function(path, "early")(None) == "early"
    assert not marker.exists()
    with pytest.raises(ScriptError, match=r"stopped at line 7, at its flow.run\(\), before defining 'late'.*"
                                          r'if __name__ == "__main__":'):
        load_script_function(path, "late")


def test_a_script_that_fails_or_lacks_the_function_says_so(tmp_path):
    path = write(tmp_path / "fails.py", """
        import os
        raise RuntimeError("boom")
        def f(ctx):
            pass
        """)
    with pytest.raises(ScriptError, match=r"failed at line 3: RuntimeError: boom\. a step imports"):
        load_script_function(path, "f")
    with pytest.raises(ScriptError, match="has no 'nothing'"):
        load_script_function(write(tmp_path / "empty.py", "x = 1\n"), "nothing")
    with pytest.raises(ScriptError, match="line 1: invalid syntax"):
        load_script_function(write(tmp_path / "bad.py", "def (:\n"), "f")
    with pytest.raises(ScriptError, match="cannot read"):
        load_script_function(str(tmp_path / "missing.py"), "f")


def test_in_the_scripts_own_process_the_function_comes_from_main(tmp_path):
    """``python script.py``: the flow's validation loads the script's function from
    ``__main__`` and runs none of the script again."""
    path = tmp_path / "main.py"
    path.write_text(textwrap.dedent("""
        from fluid_core.flow.scripts import load_script_function
        RUNS = [1]

        def f():
            return len(RUNS)

        print("same:", load_script_function(__file__, "f") is f, f())
        """))
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["same:", "True", "1"]


def test_a_failed_step_on_kubernetes_fails_wait_too():
    """KubeRun.wait, against the real operator on kmock's emulator (the test plays the
    kubelet: the first step's Job fails for good)."""
    from test_operator import NS, bind, job_ran

    from fluid_core.kube import Ref
    from fluid_core.operator.testing import EmulatedCluster

    with EmulatedCluster() as cluster:
        cluster.start_operator(namespaces=(NS,))
        bind(cluster, "kfail")
        handle = (Dataset("kfail", namespace=NS, backend=cluster.kube)
                  .process("mine:step", name="first").process("mine:step", name="second").run("kf"))
        cluster.wait_for(lambda: cluster.kube.get(Ref("batch/v1", "Job", NS, "first-dataprocess")),
                         message="the first step's Job")
        job_ran(cluster, "first-dataprocess", "n1", succeeded=False)
        with pytest.raises(FlowFailed, match="flow kf failed: DataProcess first failed") as failed:
            handle.wait(timeout=60, poll=0.1)
        assert [s["phase"] for s in failed.value.statuses] == ["Failed", "Failed"]
        assert [s["phase"] for s in handle.wait(timeout=1, check=False)] == ["Failed", "Failed"]
