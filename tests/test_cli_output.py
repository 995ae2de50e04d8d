"""What ``fluidv`` prints, as users see it through a pipe: its version, whole help lines,
no warning of vineyard's own, flow tables that end their line, fit 80 columns and say
what failed line by line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version

import pytest

from support.localcluster import kill_recorded
from vineyard_runtime.local.layout import Layout
from vineyard_runtime.local.state import read_state

#: The console script pip installed next to this interpreter.
FLUIDV = [os.path.join(os.path.dirname(sys.executable), "fluidv")]


def fluidv(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(FLUIDV + list(args), env={**environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def test_version():
    shown = fluidv("--version")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"fluidv {version('fluid-vineyard')} (vineyardd {version('vineyard-bdist')})\n"


@pytest.mark.parametrize("group", [[], ["cluster"], ["op"]])
def test_help_shows_each_command_whole(group):
    """click cuts a command's description with "..." to the terminal's width: not here."""
    from fluid_core.cli import cli
    from fluid_core.cli.group import first_sentence

    command = cli
    for name in group:
        command = command.commands[name]
    shown = fluidv(*group, "--help", env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    assert all(len(line) <= 80 for line in shown.stdout.splitlines())
    commands = shown.stdout.split("Commands:", 1)[1]
    assert "..." not in commands and "…" not in commands
    listing = " ".join(commands.split())
    for name, sub in command.commands.items():
        summary = sub.short_help or first_sentence(sub.help or "")
        assert f"{name} {summary}" in listing


FLOW = """\
apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata: {name: shown}
spec: {}
---
apiVersion: data.fluid.io/v1alpha1
kind: DataProcess
metadata: {name: boom}
spec:
  dataset: {name: shown}
  processor:
    script:
      source: |
        echo "a [bold]line[/bold] kept as written"
        python3 -c 'import sys; print("to stderr", file=sys.stderr); 1/0'
---
apiVersion: data.fluid.io/v1alpha1
kind: DataProcess
metadata: {name: tidy}
spec:
  dataset: {name: shown}
  processor:
    script: {source: "echo done"}
  ttlSecondsAfterFinished: 0
"""


def test_a_flow_table_through_a_pipe(shared_cluster, tmp_path):
    """The table ends its line, fits 80 columns with nothing cut; under it, the failed
    step's message and its log's last lines as lines, and what a starred phase means.
    vineyard's pkg_resources warning is not printed."""
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    for columns in ("80", None):
        ran = fluidv("run", str(flow), "--workdir", shared_cluster.workdir, env={"COLUMNS": columns} if columns else None)
        assert ran.returncode == 1, ran.stderr
        assert ran.stderr.splitlines() == ["error: 1 operation(s) failed: DataProcess/boom"]
        assert ran.stdout.endswith("\n") and "…" not in ran.stdout
        lines = ran.stdout.splitlines()
        rows = {line.split()[0]: line.split() for line in lines if line.split()[:1] in (["boom"], ["tidy"])}
        assert rows["boom"][1] == "Failed" and rows["tidy"][1] == "Complete*"
        if columns:
            assert all(len(line) <= 80 for line in lines), lines
            continue
        failed = lines.index(next(line for line in lines if line.startswith("DataProcess/boom failed on node-")))
        assert lines[failed].endswith(": exited with code 1")
        assert re.fullmatch(r"  log .*dataprocess-boom-\d+\.log, last \d+ line\(s\):", lines[failed + 1])
        tail = lines[failed + 2:]
        assert "    a [bold]line[/bold] kept as written" in tail and "    to stderr" in tail
        assert "    Traceback (most recent call last):" in tail and "    ZeroDivisionError: division by zero" in tail
        assert lines[-1].startswith("* removed: ttlSecondsAfterFinished passed after the step finished")
        assert lines[failed - 1].split()[0] == "tidy"  # all of it below the table


@pytest.fixture
def demo_dir(tmp_path):
    """Where ``fluidv demo`` keeps its cluster: whatever of it still runs afterwards is killed by pid."""
    try:
        yield tmp_path
    finally:
        for found in tmp_path.glob("*/cluster"):
            kill_recorded(read_state(Layout(str(found))))


def test_the_demo_shows_its_result_and_ends_each_table(demo_dir):
    shown = fluidv("demo", "--nodes", "2", "--size-mib", "1", "--workdir", str(demo_dir), timeout=600)
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == ""
    lines = shown.stdout.splitlines()
    assert "the same pipeline through Parquet/.npy files on local disk ..." in lines
    assert "…" not in shown.stdout
    evaluation = next(line for line in lines if line.startswith("evaluation: "))
    assert re.fullmatch(r"evaluation: accuracy \d+\.\d% over [\d,]+ rows, final training loss \d\.\d{4}", evaluation)
    assert lines[-1] == "cluster stopped"
