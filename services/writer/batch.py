"""Turning envelopes into line protocol, and isolating the points InfluxDB refuses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shared.errors import InfluxRejected
from shared.lineprotocol import MEASUREMENT, line


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
    owners: list[tuple[int, int]],
    write: Callable[[bytes], Awaitable[None]],
) -> Outcome:
    """Write everything in one request; if InfluxDB refuses the body, bisect to find the bad
    points so that only they are set aside and the rest is stored.

    Re-writing points that a partial write already stored is harmless: same series and timestamp
    overwrite, they never duplicate. ``InfluxUnavailable`` propagates (the caller retries).
    """
    outcome = Outcome()

    async def attempt(lo: int, hi: int) -> None:
        outcome.writes += 1
        try:
            await write("\n".join(lines[lo:hi]).encode())
            outcome.written += hi - lo
        except InfluxRejected as e:
            if hi - lo == 1:
                outcome.rejected.append(Rejected(owners[lo], e.detail))
                return
            mid = (lo + hi) // 2
            await attempt(lo, mid)
            await attempt(mid, hi)

    if lines:
        await attempt(0, len(lines))
    return outcome
