"""Readers and checks of what the tests put: a reader in another process that holds its
view, a one-shot interpreter on a node, a node's memory in use, and equality of what was
written and what was read (type and dtype included)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa


def run_python(code: str, socket: str) -> subprocess.CompletedProcess:
    """Run ``code`` (dedented) in a new interpreter connected to the node at ``socket``."""
    env = dict(os.environ, VINEYARD_IPC_SOCKET=socket)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=120)


class Holder(subprocess.Popen):
    """A reader in another process that gets ``name`` and holds its zero-copy view
    until told: ``look()`` gives the min and max the view shows now, ``let_go()`` ends it.
    It connects through ``socket``, or ``config`` (a vineyard-config.yaml)."""

    CODE = """
        import sys, numpy as np, pyarrow as pa, objects
        store = objects.connect()
        value = store.get(sys.argv[1])
        print("holding", flush=True)
        sys.stdin.readline()  # the test deletes, replaces and overwrites meanwhile
        column = value if isinstance(value, np.ndarray) else value.column(0).to_numpy()
        print(float(column.min()), float(column.max()), flush=True)
        sys.stdin.readline()
    """

    def __init__(self, name: str, *, socket: str | None = None, config: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("VINEYARD_IPC_SOCKET", "VINEYARD_CONFIG")}
        env.update({"VINEYARD_IPC_SOCKET": socket} if socket else {"VINEYARD_CONFIG": str(config)})
        super().__init__([sys.executable, "-c", textwrap.dedent(self.CODE), name], env=env, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.stdout.readline().strip() == "holding", self.stderr.read()

    def look(self) -> list[str]:
        self.stdin.write("\n")
        self.stdin.flush()
        return self.stdout.readline().split()

    def let_go(self) -> None:
        self.stdin.write("\n")
        self.stdin.flush()
        assert self.wait(timeout=30) == 0, self.stderr.read()


def memory_used(store) -> int:
    """Bytes of shared memory in use on the node of ``store``."""
    return int(store.ipc.instance_status()["memory_usage"])


def assert_same(a, b) -> None:
    """``b`` (what was read) equals ``a`` (what was written), in type and dtype too."""
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    elif isinstance(a, (pa.Table, pa.RecordBatch, pa.Array, pa.ChunkedArray)):
        assert type(a) is type(b) and a.equals(b)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b)
    elif (torch := sys.modules.get("torch")) is not None and isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


__all__ = ["Holder", "assert_same", "memory_used", "run_python"]
