"""The restart backoff shared by the local supervisor, the FUSE mount and the bridge,
and the supervised daemon that restarts by it."""

from __future__ import annotations

import os
import signal
import sys
import time

from support.stopping import stop
from vineyard_runtime.local.daemon import Daemon, stop_all
from vineyard_runtime.plumbing.processes import is_alive, spawn
from vineyard_runtime.plumbing.restarts import Backoff
from vineyard_runtime.plumbing.waiting import wait_until


def test_delays_double_up_to_the_maximum_and_reset_once_stable():
    backoff = Backoff(maximum=4.0, stable_after=30.0)
    backoff.started_now()
    assert [backoff.schedule() for _ in range(6)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert not backoff.due()  # 4 s from now
    backoff.started = time.monotonic() - 31  # it then ran for longer than stable_after
    assert backoff.schedule() == 0.0 and backoff.due()


def test_may_restart_schedules_once_per_death():
    backoff = Backoff()
    backoff.started_now()
    assert backoff.may_restart()  # the first death: at once
    backoff.started_now()
    assert not backoff.may_restart()  # died again at once: 0.5 s to wait
    waiting_until = backoff.next_attempt
    assert not backoff.may_restart() and backoff.next_attempt == waiting_until  # asking again adds nothing
    backoff.next_attempt = time.monotonic()  # the delay has passed
    assert backoff.may_restart()


def _sleeper(tmp_path):
    return spawn([sys.executable, "-c", "import time; time.sleep(120)"], log_path=str(tmp_path / "sleep.log"))


def test_a_supervised_daemon_is_reaped_once_and_restarted_after_its_backoff(tmp_path):
    daemon = Daemon()
    daemon.started(_sleeper(tmp_path))
    try:
        assert daemon.up and daemon.reap() is None and not daemon.restart_due()
        pid = daemon.proc.pid
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: daemon.exited() is not None, 30)
        assert daemon.reap() == (-signal.SIGKILL, 0.0)  # the first death: restart at once
        assert not daemon.up and daemon.reap() is None and daemon.restart_due()
        daemon.started(_sleeper(tmp_path))
        assert daemon.failed() == 0.5  # a start that failed at once waits longer
        assert not daemon.up and not daemon.restart_due() and not is_alive(pid)
        daemon.started(_sleeper(tmp_path))
        stop(daemon.proc.pid)
        daemon.end()  # a stopped process ends too, and is reaped as any death
        assert daemon.reap() is not None
    finally:
        daemon.kill()


def test_stop_all_ends_every_daemon_even_one_that_ignores_sigterm(tmp_path):
    stubborn = spawn([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "print('ready', flush=True); time.sleep(120)"], log_path=str(tmp_path / "s.log"))
    wait_until(lambda: "ready" in (tmp_path / "s.log").read_text(), 30)
    daemons = [Daemon(), Daemon(), Daemon()]
    daemons[0].started(stubborn)
    daemons[1].started(_sleeper(tmp_path))
    pids = [d.proc.pid for d in daemons[:2]]
    stop_all(daemons, timeout=0.5)
    assert not any(d.up for d in daemons) and not any(is_alive(pid) for pid in pids)
