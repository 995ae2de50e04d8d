"""Ids of values kept inline in the object directory stay unique across forked processes
(the flow runner's step helper imports ``objects`` once, then forks every step)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

FORKED_IDS = textwrap.dedent("""
    import os
    from vineyard_runtime.object_ids import is_inline_id, new_inline_id

    made = [new_inline_id()]  # the helper has drawn ids before it forks
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(write, new_inline_id().encode())
            os._exit(0)
        os.close(write)
        made.append(os.read(read, 64).decode())
        os.close(read)
        os.waitpid(pid, 0)
    made.append(new_inline_id())
    assert all(is_inline_id(i) for i in made), made
    print(len(set(made)), made)
""")


def test_forked_processes_never_make_the_same_inline_id():
    done = subprocess.run([sys.executable, "-c", FORKED_IDS], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("4 "), f"an id was made twice: {done.stdout}"
