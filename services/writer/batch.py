"""Turning envelopes into line protocol, and isolating the points InfluxDB refuses."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.errors import InfluxRejected
from shared.lineprotocol import MEASUREMENT, SeriesLines, line


def reading_line(reading: dict[str, Any]) -> str:
    """One reading → one line. Raises ``KeyError``/``TypeError``/``ValueError`` when malformed."""
    tags = {
        "machine_id": str(reading["machine_id"]),
        "factory_id": str(reading["factory_id"]),
        "sensor_type": str(reading["sensor_type"]),
        "location": str(reading["location"]),
    }
    fields = reading["fields"]
    if not isinstance(fields, dict):
        raise TypeError("fields must be an object")
    return line(
        MEASUREMENT, tags, {str(k): float(v) for k, v in fields.items()}, int(reading["ts"])
    )


class LineBuilder:
    """:func:`reading_line`, faster (:class:`SeriesLines`): same lines, same exceptions in the
    same order. For messages whose envelope carries no lines of its own."""

    def __init__(self, max_series: int = 100_000) -> None:
        self.cache = SeriesLines(max_series)

    def line(self, reading: dict[str, Any]) -> str:
        series = (
            str(reading["machine_id"]),
            str(reading["factory_id"]),
            str(reading["sensor_type"]),
            str(reading["location"]),
        )
        fields = reading["fields"]
        if not isinstance(fields, dict):
            raise TypeError("fields must be an object")
        values = {str(k): float(v) for k, v in fields.items()}
        ts = int(reading["ts"])
        field_set = self.cache.field_set(values)
        return f"{self.cache.series(*series)} {field_set} {ts}"


class OwnerLookup(Protocol):
    """Line index → (message, reading) it came from; a list of pairs is one."""

    def __getitem__(self, index: int, /) -> tuple[int, int]: ...


class Owners:
    """Where each line of a batch came from: (held message, reading within it).

    Needed only when InfluxDB refuses a point, so it is worked out then, from where each
    message's lines start, rather than kept as a tuple per line.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._messages: list[int] = []
        self._kept: list[list[int] | None] = []

    def add(self, message: int, start: int, kept: list[int] | None) -> None:
        """Lines from ``start`` on belong to ``message``: its readings ``kept`` (None: all)."""
        self._starts.append(start)
        self._messages.append(message)
        self._kept.append(kept)

    def __getitem__(self, index: int, /) -> tuple[int, int]:
        j = bisect_right(self._starts, index) - 1
        offset = index - self._starts[j]
        kept = self._kept[j]
        return self._messages[j], offset if kept is None else kept[offset]


@dataclass(slots=True)
class Rejected:
    """A point InfluxDB refused, with its owner (message index, reading index) and why."""

    owner: tuple[int, int]
    error: str


@dataclass(slots=True)
class Outcome:
    written: int = 0
    writes: int = 0
    rejected: list[Rejected] = field(default_factory=list)


async def write_isolating(
    lines: list[str],
    owners: OwnerLookup,
    write: Callable[[bytes], Awaitable[None]],
) -> Outcome:
    """Write everything in one request; if InfluxDB refuses the body, bisect to find the bad
    points so that only they are set aside and the rest is stored.

    Re-writing points that a partial write already stored is harmless: same series and timestamp
    overwrite, they never duplicate. ``InfluxUnavailable`` propagates (the caller retries).
    """
    outcome = Outcome()
    # Iterative, not a recursive closure: a nested function that calls itself is a reference
    # cycle holding ``lines``, freed only by the cyclic collector, which in a writer runs
    # rarely; every batch's line strings stayed in memory until then (RSS grew ~200 B/reading).
    pending = [(0, len(lines))] if lines else []
    while pending:
        lo, hi = pending.pop()
        outcome.writes += 1
        try:
            await write("\n".join(lines[lo:hi]).encode())
            outcome.written += hi - lo
        except InfluxRejected as e:
            if hi - lo == 1:
                outcome.rejected.append(Rejected(owners[lo], e.detail))
                continue
            mid = (lo + hi) // 2
            pending.append((mid, hi))  # popped after the first half, as before
            pending.append((lo, mid))
    return outcome
