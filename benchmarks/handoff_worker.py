"""Consumer side of the handoff benchmarks: receives a handle, reads the data, sums it.

Runs as its own process. Reads one JSON command per line on stdin, answers one JSON
line on stdout: ``{"sum": ...}``.
"""

from __future__ import annotations

import json
import os
import pickle
import sys

import numpy as np


def read_exact(fd: int, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise EOFError("pipe closed")
        got += n


def main() -> None:
    store = client = None
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "import":
            import objects
            import pyarrow  # noqa: F401
            import vineyard

            total = 0.0
        elif op == "objects":
            if store is None:
                import objects

                store = objects.connect(cmd["socket"])
            total = float(store.get(cmd["name"]).sum())
        elif op == "stream":
            import objects

            with objects.connect(cmd["socket"]) as reader_store:
                total = float(sum(1 for _ in reader_store.open_reader(cmd["name"], timeout=60)))
        elif op == "vineyard":
            if client is None:
                import vineyard

                client = vineyard.connect(cmd["socket"])
            total = float(client.get(name=cmd["name"]).sum())
        elif op == "shm":
            from multiprocessing import resource_tracker, shared_memory

            shm = shared_memory.SharedMemory(name=cmd["name"])
            resource_tracker.unregister(shm._name, "shared_memory")  # the producer owns it
            total = float(np.ndarray((cmd["count"],), dtype=np.float64, buffer=shm.buf).sum())
            shm.close()
        elif op == "pickle":
            fd = cmd["fd"]
            header = bytearray(cmd["header"])
            read_exact(fd, memoryview(header))
            payload = bytearray(cmd["nbytes"])
            read_exact(fd, memoryview(payload))
            total = float(pickle.loads(header, buffers=[payload]).sum())
        elif op == "pickles":
            for size in cmd["sizes"]:
                payload = bytearray(size)
                read_exact(cmd["fd"], memoryview(payload))
                pickle.loads(payload)
            total = float(len(cmd["sizes"]))
        elif op == "arrow":
            import pyarrow as pa

            with pa.memory_map(cmd["path"]) as source:
                table = pa.ipc.open_file(source).read_all()
                total = float(table.column(0).chunk(0).to_numpy().sum())
        else:
            raise ValueError(f"unknown op {op}")
        sys.stdout.write(json.dumps({"sum": total}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
