"""Start and stop daemons by pid, so that nothing outlives its owner."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Sequence

import psutil

from vineyard_runtime.plumbing.waiting import wait_until

_PR_SET_PDEATHSIG = 1


def parent_death_signal(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` (or a call in a forked child): the kernel sends ``sig`` to this
    process when the thread that started it dies."""
    def apply() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return apply


def spawn(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    log_path: str,
    die_with_parent: bool = True,
    death_signal: int = signal.SIGTERM,
    stdout: int | None = None,
    stdin: int | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with output appended to ``log_path``.

    With ``die_with_parent`` the kernel sends ``death_signal`` (SIGTERM unless told) to
    the child when the calling thread's process dies, so a killed supervisor leaks no
    daemon.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            env=full_env,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            close_fds=True,
            start_new_session=new_session,
            preexec_fn=parent_death_signal(death_signal) if die_with_parent else None,
        )


def is_alive(pid: int | None) -> bool:
    """True when ``pid`` names a live process that is not a zombie."""
    if not pid:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:  # gone, or not ours to see
        return False


def cmdline(pid: int) -> str:
    """The command line of ``pid`` ('' when gone)."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def owned(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive and its command line contains ``marker``.

    Guards against killing an unrelated process that reused a recorded pid.
    """
    return pid is not None and is_alive(pid) and marker in cmdline(pid)


def _signal_all(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def terminate(pids: Sequence[int], timeout: float = 10.0) -> None:
    """SIGTERM every pid, wait up to ``timeout`` for all, then SIGKILL the rest."""
    live = [pid for pid in pids if is_alive(pid)]
    _signal_all(live, signal.SIGTERM)
    wait_until(lambda: not any(is_alive(pid) for pid in live), timeout)
    live = [pid for pid in live if is_alive(pid)]
    _signal_all(live, signal.SIGKILL)
    wait_until(lambda: not any(is_alive(pid) for pid in live), 5, interval=0.02)


def log_tail(path: str, lines: int = 8) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:]).strip()
    except OSError:
        return ""
