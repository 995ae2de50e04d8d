"""The step helper: forks answer at once, every ending comes back over its pipe, and a
step (or the helper) that dies is reported as dead, never waited on forever."""

from __future__ import annotations

import os
import signal

import pytest

from support.waiting import wait_for
from fluid_core.flow.spawner import Spawner, SpawnerError
from vineyard_runtime.plumbing.processes import is_alive


@pytest.fixture
def spawner(tmp_path):
    with Spawner(str(tmp_path / "steps.log")) as helper:
        yield helper


def test_each_steps_report_reaches_its_own_handle_even_when_large(spawner, tmp_path):
    steps = [spawner.spawn({"say": f"step {i}", "size": 300_000 * (i % 2)}, str(tmp_path / f"{i}.log"),
                           target="spawned:answer") for i in range(8)]
    ended = [step.wait(60) for step in steps]
    assert [e.message for e in ended] == [f"step {i}" for i in range(8)]
    assert all(e.ok for e in ended)
    assert [e.report["pid"] for e in ended] == [s.pid for s in steps]
    assert [len(e.report["blob"]) for e in ended] == [300_000 * (i % 2) for i in range(8)]


def test_a_waiter_gets_the_ending_and_the_handle_keeps_it(spawner, tmp_path):
    step = spawner.spawn({"pidfile": str(tmp_path / "pid"), "seconds": 0.3}, str(tmp_path / "s.log"),
                         target="spawned:sleep_then_answer")
    assert step.poll() is None  # still sleeping
    ended = step.wait(60)
    assert ended is not None and ended.message == "slept"
    assert step.poll() is ended and spawner.outcome(step.pid) is None  # handed over once, kept by the handle


def test_a_step_killed_or_leaving_without_a_report_is_said_to_have_died(spawner, tmp_path):
    pidfile = tmp_path / "pid"
    killed = spawner.spawn({"pidfile": str(pidfile), "seconds": 120}, str(tmp_path / "k.log"),
                           target="spawned:sleep_then_answer")
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), timeout=30, message="the step started")
    os.kill(killed.pid, signal.SIGKILL)
    ended = killed.wait(30)
    assert ended is not None and not ended.ok
    assert f"the step process {killed.pid} died before it finished: killed by SIGKILL" == ended.message

    left = spawner.spawn({}, str(tmp_path / "l.log"), target="spawned:leave").wait(30)
    assert left is not None and not left.ok and "exited with code 3 without a result" in left.message


def test_a_step_stopped_by_its_owner_is_reported_dead(spawner, tmp_path):
    pidfile = tmp_path / "pid"
    step = spawner.spawn({"pidfile": str(pidfile), "seconds": 120}, str(tmp_path / "s.log"),
                         target="spawned:sleep_then_answer")
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), timeout=30, message="the step started")
    step.stop(timeout=5)
    assert not is_alive(step.pid)
    ended = step.wait(30)
    assert ended is not None and "killed by SIGTERM" in ended.message


def test_a_killed_helper_takes_its_steps_along_and_refuses_new_ones(tmp_path):
    pidfile = tmp_path / "pid"
    with Spawner(str(tmp_path / "steps.log")) as helper:
        step = helper.spawn({"pidfile": str(pidfile), "seconds": 120}, str(tmp_path / "s.log"),
                            target="spawned:sleep_then_answer")
        wait_for(lambda: pidfile.exists() and pidfile.read_text(), timeout=30, message="the step started")
        assert helper._proc is not None
        helper._proc.kill()
        ended = step.wait(30)
        assert ended is not None and "the step helper stopped" in ended.message
        wait_for(lambda: not is_alive(step.pid), timeout=30, message="the step died with its helper")
        with pytest.raises(SpawnerError, match="not running"):
            helper.spawn({}, str(tmp_path / "x.log"), target="spawned:leave")
