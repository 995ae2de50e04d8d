"""Kubernetes-style timestamps (RFC 3339, UTC, whole seconds) used in statuses."""

from __future__ import annotations

import datetime as dt

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now_stamp() -> str:
    """The current time as a status timestamp."""
    return dt.datetime.now(dt.timezone.utc).strftime(FORMAT)


def parse_stamp(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, FORMAT).replace(tzinfo=dt.timezone.utc)


def seconds_between(start: str, end: str) -> float:
    return (parse_stamp(end) - parse_stamp(start)).total_seconds()
