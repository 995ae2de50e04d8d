"""Goals and baselines of the benchmarks, printed together at the end of a run.

Every goal a benchmark states in its docstring is recorded here with the figure that
decides it, and the run ends with one table: ``MET``, ``MISSED``, or ``NOT MEASURED``
with the reason (a baseline that did not run under ``-k``, an extra not installed).
A ratio to a baseline is never silently left out: ``baseline()`` says which one is
missing, and the goal that needed it says so.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Goal:
    """One stated goal and what this run measured of it."""

    benchmark: str
    text: str  # "hand-over >= 15x faster than files"
    measured: float | None
    target: float
    at_least: bool  # True: measured >= target; False: measured <= target
    unit: str = ""
    reason: str = ""  # why it was not measured

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "NOT MEASURED"
        met = self.measured >= self.target if self.at_least else self.measured <= self.target
        return "MET" if met else "MISSED"

    def figure(self) -> str:
        if self.measured is None:
            return self.reason
        return f"{self.measured:,.3g}{self.unit}"


GOALS: list[Goal] = []
#: baseline name -> its figures, as the benchmark that measures it recorded them
BASELINES: dict[str, dict[str, float]] = {}
MISSING: dict[str, str] = {}  # baseline name -> how to get it measured


def goal(benchmark: str, text: str, measured: float | None, *, at_least: float | None = None,
         at_most: float | None = None, unit: str = "", reason: str = "") -> None:
    """Record ``text`` as met when ``measured >= at_least`` (or ``<= at_most``); a None
    figure is recorded as not measured, ``reason`` saying why."""
    if (at_least is None) == (at_most is None):
        raise ValueError("a goal has exactly one of at_least and at_most")
    target = at_least if at_least is not None else at_most
    assert target is not None
    GOALS.append(Goal(benchmark, text, measured, target, at_least is not None, unit,
                      reason or ("" if measured is not None else "its figure was not measured")))


def record_baseline(name: str, figures: dict[str, float]) -> None:
    """What the baseline ``name`` measured in this run (keys are the benchmarks' own)."""
    BASELINES.setdefault(name, {}).update(figures)


def baseline(name: str, key: str, how: str) -> float | None:
    """The figure ``key`` of baseline ``name``, or None, noting that it did not run
    (``how``: what to select so that it does)."""
    value = BASELINES.get(name, {}).get(key)
    if value is None:
        MISSING[name] = how
    return value


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def summary_lines() -> list[str]:
    """The goals table and the missing baselines, as lines to print."""
    lines: list[str] = []
    if GOALS:
        width = max(len(f"{g.benchmark}: {g.text}") for g in GOALS)
        lines += ["", "goals stated by the benchmarks:"]
        for g in GOALS:
            lines.append(f"  {f'{g.benchmark}: {g.text}':<{width}}  {g.verdict:<12}  {g.figure()}")
    if MISSING:
        lines += ["", "baselines that did not run (their ratios and goals are not measured):"]
        lines += [f"  {name}: {how}" for name, how in MISSING.items()]
    return lines


__all__ = ["BASELINES", "GOALS", "Goal", "baseline", "goal", "median", "record_baseline", "summary_lines"]
