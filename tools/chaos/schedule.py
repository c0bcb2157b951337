"""Phases and pacing: which reading is due when, and to which fault phase it belongs.

The run is cut into phases: a baseline without fault, then one phase per fault. The fault
injector starts each phase (and injects its fault at once); each door sends an equal share of
its readings in every phase, spread evenly over ``phase_s`` seconds. Reading ``j`` of a door
therefore belongs to a fixed phase, and its timestamp is the moment it was due — what a gateway
does when it buffers readings during an outage and sends them later.

A phase lasts at least ``phase_s``, longer when its fault takes longer to repair, so timestamps
of successive phases never overlap and every (machine, timestamp) is unique.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass


@dataclass(slots=True)
class PhaseTimes:
    wall: float  # time.time() at the start
    mono: float  # time.monotonic() at the start
    ended_mono: float | None = None


class Schedule:
    def __init__(self, phases: int, phase_s: float) -> None:
        self.phases = phases
        self.phase_s = phase_s
        self.started: list[PhaseTimes] = []
        self._lock = threading.Lock()

    def begin(self, phase: int) -> None:
        now = PhaseTimes(time.time(), time.monotonic())
        with self._lock:
            assert phase == len(self.started), "phases start in order"
            if self.started:
                self.started[-1].ended_mono = now.mono
            self.started.append(now)

    def end(self) -> None:
        with self._lock:
            if self.started and self.started[-1].ended_mono is None:
                self.started[-1].ended_mono = time.monotonic()

    @property
    def current(self) -> int:
        """The phase under way (the last one started); -1 before the first."""
        return len(self.started) - 1

    def seconds(self, phase: int) -> float:
        t = self.started[phase]
        return (t.ended_mono or time.monotonic()) - t.mono


class Pacer:
    """One door's readings over the phases: ``total`` readings, an equal share per phase."""

    def __init__(self, schedule: Schedule, total: int) -> None:
        self.schedule = schedule
        self.total = total
        p = schedule.phases
        self.bounds = [total * i // p for i in range(p + 1)]

    def phase_of(self, j: int) -> int:
        return bisect.bisect_right(self.bounds, j) - 1

    def _rate(self, phase: int) -> float:
        return max(1, self.bounds[phase + 1] - self.bounds[phase]) / self.schedule.phase_s

    def due(self) -> int:
        """How many of this door's readings are due by now (all of them once the run is over)."""
        current = self.schedule.current
        if current < 0:
            return 0
        start = self.schedule.started[current].mono
        first, last = self.bounds[current], self.bounds[current + 1]
        elapsed = time.monotonic() - start
        return min(last, first + int(elapsed * self._rate(current)) + 1)

    def timestamp_us(self, j: int) -> int:
        """When reading ``j`` was due: its timestamp (µs since the epoch)."""
        phase = self.phase_of(j)
        start_us = int(self.schedule.started[phase].wall * 1_000_000)
        return start_us + int((j - self.bounds[phase]) * 1_000_000 / self._rate(phase))
