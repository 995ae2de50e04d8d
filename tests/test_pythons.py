"""The object, local-cluster and flow tests on the CPythons users have beside the host's.

Each runs in Debian's root file system of that Python (``tests/support/pythons.py``,
built by ``make pythons``), the project installed from its wheel, vineyard's own client
absent (it has no wheels there): pytest runs there in namespaces of its own, so every
daemon it starts and every mount it makes end with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import pythons

#: the tests run on every Python: the object store (through its own protocol client), the
#: local cluster and its nodes, and the flows of data operations
SUBSET = ("test_objects_ipc.py", "test_objects_store.py", "test_objects_streams.py", "test_local_cluster.py",
          "test_flow.py")
#: what a run may take on 2 slow cores (the tests themselves take about 3 minutes)
RUN_TIMEOUT = 1500


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield pythons.build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.mark.timeout(RUN_TIMEOUT + 60)
@pytest.mark.parametrize("version", list(pythons.PYTHONS))
def test_the_object_cluster_and_flow_tests_pass_on(version: str, wheel: Path, tmp_path: Path) -> None:
    root = pythons.root_path(pythons.PYTHONS[version])
    assert pythons.is_built(root), (
        f"no root file system of CPython {version} at {root}: `make pythons` builds it (make test does)")
    tests = " ".join(f"/src/tests/{name}" for name in SUBSET)
    done = pythons.run_in_root(
        root, wheel,
        "python -c 'import sys, objects; print(\"python\", sys.version.split()[0]); "
        "print(\"vineyard importable:\", __import__(\"importlib.util\").util.find_spec(\"vineyard._C\") is not None)' "
        f"&& python -m pytest -q -c /src/pyproject.toml --rootdir /src {tests}",
        tmp_path / "scratch", timeout=RUN_TIMEOUT)
    shown = done.stdout + done.stderr
    assert done.returncode == 0, f"the tests failed on CPython {version}:\n{shown[-6000:]}"
    assert re.search(rf"^python {re.escape(version)}\.\d+$", done.stdout, re.M), shown[-2000:]
    assert "vineyard importable: False" in done.stdout, "the run is without vineyard's own client"
    summary = re.search(r"(\d+) passed", done.stdout)
    assert summary and int(summary.group(1)) >= 60 and " failed" not in done.stdout, shown[-3000:]
    print(f"CPython {version}: {done.stdout.strip().splitlines()[-1]}")
