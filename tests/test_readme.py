"""Every ```python block of README.md and of the documentation (docs/), run as written.

Only paths are moved: ``/srv/`` becomes a temporary directory, and ``$FLUIDV_HOME`` (the
local cluster's default workdir) one of the test's. No name is defined for a snippet: each
runs as a reader would paste it. ``MARKERS`` says which test runs which block, and
``test_every_python_block_is_run_by_a_test`` fails for a block that none runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.localcluster import force_stop
import objects
from vineyard_runtime.local import LocalCluster
from vineyard_runtime.local.cluster import is_running

ROOT = Path(__file__).resolve().parent.parent
#: The README, then the documentation's pages.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

#: A string found in exactly one python block of the pages -> the test that runs it.
MARKERS = {
    '"tour/x"': "test_the_readmes_tour_runs",
    'zones=["a", "a", "b"]': "test_the_local_cluster_snippet_runs",
    "from fluid_core.sdk import Dataset": "test_the_sdk_snippet_runs_as_a_script",
    "from fluid_core.fluid import ClientConfig, FluidClient, constants, models": "test_the_fluid_sdk_snippet_runs",
    ".load(\"/data/1.txt\")": "test_the_fluid_release_note_snippet_runs",
    "store = objects.connect()": "test_the_objects_snippet_runs",
}


def python_blocks() -> list[tuple[str, str]]:
    """(page, code) of every python block, the page relative to the checkout."""
    return [(str(page.relative_to(ROOT)), code) for page in PAGES
            for code in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)]


def block(marker: str) -> str:
    (found,) = [code for _, code in python_blocks() if marker in code]
    return found


def run_snippet(code: str, srv: Path) -> str:
    """Run ``code`` in this process (``/srv/`` moved to ``srv``); what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code.replace("/srv/", f"{srv}/"), "snippet", "exec"), {"__name__": "readme"})
    return printed.getvalue()


def run_script(code: str, folder: Path, home: Path, srv: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``code`` pasted into ``folder/snippet.py`` (``/srv/`` moved to ``srv``) and run
    with ``python snippet.py`` there, as a user runs a script."""
    script = folder / "snippet.py"
    script.write_text(code.replace("/srv/", f"{srv}/") if srv else code)
    with stopped_after(home):
        return subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True, text=True,
                              timeout=600, env={**os.environ, "FLUIDV_HOME": str(home)})


@contextlib.contextmanager
def stopped_after(workdir: Path):
    """A cluster that the block starts in ``workdir`` and leaves running is stopped, by pid."""
    before = is_running(str(workdir))
    try:
        yield
    finally:
        if not before and is_running(str(workdir)):
            force_stop(LocalCluster.attach(str(workdir)), set())


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """``$FLUIDV_HOME``: where ``LocalCluster()`` and ``ClientConfig()`` find their cluster."""
    path = tmp_path / "home"
    monkeypatch.setenv("FLUIDV_HOME", str(path))
    return path


@pytest.fixture
def running(home):
    """The local cluster "that runs" in ``$FLUIDV_HOME``, of the shape the snippets bind."""
    local = LocalCluster(nodes=3, size="1Gi", workdir=str(home))
    with stopped_after(home):
        local.start()
        yield local


def test_every_python_block_is_run_by_a_test():
    blocks = python_blocks()
    assert len(PAGES) > 5 and blocks, "the README and the docs' pages are found"
    for page, code in blocks:
        found = [m for m in MARKERS if m in code]
        assert len(found) == 1, (f"the python block of {page} starting {code.splitlines()[0]!r} is run by "
                                 f"{'no' if not found else 'more than one'} test: give it a test here and a marker "
                                 "in MARKERS")
    for marker, test in MARKERS.items():
        assert sum(marker in code for _, code in blocks) == 1, f"{marker!r} ({test}) is in no block, or in several"
        assert callable(globals().get(test)), f"MARKERS names {test}, which this module does not define"


def test_the_local_cluster_snippet_runs(tmp_path, home):
    with stopped_after(home):
        printed = run_snippet(block('zones=["a", "a", "b"]'), tmp_path)
    assert "[0. 1. 2. 3. 4. 5. 6. 7. 8. 9.]" in printed
    assert not is_running(str(home)), "the with block stops its cluster"


def test_the_sdk_snippet_runs_as_a_script(tmp_path, home):
    """The SDK snippet is a script: written to a file and run with ``python``, as a user
    runs it, from a folder holding its ``data/raw.parquet``."""
    (tmp_path / "data").mkdir()
    frame = {"x0": np.arange(6.0), "x1": np.arange(6.0) * 2, "x2": np.ones(6)}
    pq.write_table(pa.table(frame), tmp_path / "data" / "raw.parquet")
    done = run_script(block("from fluid_core.sdk import Dataset"), tmp_path, home, srv=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    features = np.load(tmp_path / "exports" / "features.npy")
    assert features.tolist() == np.stack([frame["x0"], frame["x1"]], axis=1).tolist()
    assert pq.read_table(tmp_path / "exports" / "raw.parquet").column_names == ["x0", "x1", "x2"]


def test_the_fluid_sdk_snippet_runs(tmp_path, running):
    srv = tmp_path / "srv"
    (srv / "ufs").mkdir(parents=True)
    (srv / "new").mkdir()
    np.save(srv / "new" / "part.npy", np.arange(3))
    printed = run_snippet(block("from fluid_core.fluid import ClientConfig, FluidClient, constants, models"), srv)
    assert "cachedPercentage" in printed
    with objects.connect(running.nodes[0].socket) as store:
        assert store.get("default/demo/in/part").tolist() == [0, 1, 2]


def test_the_fluid_release_note_snippet_runs(tmp_path, home, running):
    """Fluid 1.0's announcement flow, as written, in a script: migrate from the
    dataset's own mount, load a text file, a function as the processor, migrate back."""
    srv = tmp_path / "srv"
    (srv / "mnist" / "data").mkdir(parents=True)
    (srv / "mnist" / "data" / "1.txt").write_text("1 2 3\n")
    np.save(srv / "mnist" / "data" / "labels.npy", np.arange(4))
    done = run_script(block('.load("/data/1.txt")'), tmp_path, home, srv=srv)
    assert done.returncode == 0, done.stderr[-4000:]
    with objects.connect(running.nodes[0].socket) as store:
        assert bytes(store.get("default/mnist/data/1.txt")) == b"1 2 3\n"  # a text file is cached as its bytes
        assert store.get("default/mnist/data/labels").tolist() == [0, 1, 2, 3]  # the migration from the mount
    assert (srv / "mnist" / "data" / "1.txt").read_text() == "1 2 3\n"  # written back as the same file
    assert sorted(os.listdir(srv / "mnist" / "data")) == ["1.txt", "labels.npy"]
    assert np.load(srv / "mnist" / "data" / "labels.npy").tolist() == [0, 1, 2, 3]


def test_the_objects_snippet_runs(tmp_path, running, monkeypatch):
    monkeypatch.setenv("VINEYARD_IPC_SOCKET", running.nodes[0].socket)
    printed = run_snippet(block("store = objects.connect()"), tmp_path)
    assert printed.split() == ["node-0", str(4 << 20), "1", "1", "1"]
    with objects.connect(running.nodes[1].socket) as store:
        assert store.get("scores")[-1] == 1.0
        assert store.get("features/v1")["t"].column("a").to_pylist() == [1, 2]


def test_the_readmes_tour_runs(tmp_path, running):
    """The README's tour, its cluster up as the tour's first command leaves it."""
    printed = run_snippet(block('"tour/x"'), tmp_path)
    assert printed.split() == [str(np.arange(1_000_000.0).sum())]
    with objects.connect(running.nodes[2].socket) as store:
        assert store.info("tour/x").node == "node-0"
