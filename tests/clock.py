"""A frozen wall clock shared by a test and the product's notion of "the hour/day in progress"
(the ``clock`` fixture); ``MILLRACE_TEST_CLOCK`` puts it near an hour or day boundary."""

from __future__ import annotations

import importlib
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

# Modules of the product that decide from the wall clock which hour or day is still in progress.
CLOCK_MODULES = (
    "services.query_api.history",
    "services.query_api.data.summary",
    "services.query_api.machines.status",
    "services.writer.rollup",
)


class FrozenClock:
    """The ``time`` module as :data:`CLOCK_MODULES` see it under the ``clock`` fixture: the wall
    clock (``time()``, ``time_ns()``) stands still at ``now_ns`` until a test moves it; the rest
    (``monotonic``, ``sleep``...) is the real one."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def time_ns(self) -> int:
        return self.now_ns

    def time(self) -> float:
        return self.now_ns / 1e9

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def clock_start(now: datetime, spec: str | None) -> int:
    """The instant a frozen clock starts at: ``now``, or with ``spec`` ("MM:SS" or "HH:MM:SS",
    UTC) the latest instant not after ``now`` that shows those minutes and seconds (and hours).
    ``MILLRACE_TEST_CLOCK=59:45`` runs the clock-sensitive tests 15 s before an hour ends,
    ``00:05`` 5 s after one began, ``23:59:45`` 15 s before a day ends."""
    now = now.astimezone(UTC)
    if spec:
        parts = [int(p) for p in spec.split(":")]
        if len(parts) == 2:
            at = now.replace(minute=parts[0], second=parts[1], microsecond=0)
            step = timedelta(hours=1)
        else:
            at = now.replace(hour=parts[0], minute=parts[1], second=parts[2], microsecond=0)
            step = timedelta(days=1)
        now = at - step if at > now else at
    return int(now.timestamp()) * 10**9 + now.microsecond * 1000


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    """A wall clock that stands still for the whole test, shared by the test and the product's
    notion of "the hour/day in progress", so a test that straddles an hour boundary sees the
    same hour as the code it checks. ``MILLRACE_TEST_CLOCK`` (see :func:`clock_start`) puts it
    near a boundary on purpose."""
    frozen = FrozenClock(clock_start(datetime.now(UTC), os.environ.get("MILLRACE_TEST_CLOCK")))
    for name in CLOCK_MODULES:
        monkeypatch.setattr(importlib.import_module(name), "time", frozen)
    return frozen
