"""The README's snippets, run as written (paths under /srv moved to a temporary directory)."""

from __future__ import annotations

import contextlib
import io
import os
import re

import numpy as np

from vineyard_runtime.local import LocalCluster

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def python_blocks() -> list[str]:
    with open(README) as handle:
        return re.findall(r"```python\n(.*?)```", handle.read(), flags=re.S)


def test_the_fluid_sdk_snippet_runs(tmp_path, monkeypatch):
    snippet = next(b for b in python_blocks() if "from fluid_core.fluid import" in b)
    srv = tmp_path / "srv"
    (srv / "ufs").mkdir(parents=True)
    (srv / "new").mkdir()
    np.save(srv / "new" / "part.npy", np.arange(3))
    home = tmp_path / "home"
    monkeypatch.setenv("FLUIDV_HOME", str(home))
    local = LocalCluster(nodes=3, size="256Mi", workdir=str(home))  # the cluster "that runs"
    try:
        local.start()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(snippet.replace("/srv/", f"{srv}/"), "README.md", "exec"), {"__name__": "readme"})
        assert "cachedPercentage" in printed.getvalue()
    finally:
        local.stop()
