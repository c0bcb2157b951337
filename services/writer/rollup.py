"""Hourly and daily tiers, built by the pipeline itself (portable: InfluxDB 1.x, 2.x, 3.x).

Continuous queries (1.x) and tasks (2.x) are not portable, so the writer re-aggregates every
window it touched: hourly from raw, then daily from hourly. A window is recomputed as a whole
from the tier below, so late or re-delivered readings simply produce the right aggregate again
(idempotent: same series, same window timestamp).

Tier points (measurement ``sensor_readings`` in the ``hourly``/``daily`` retention policies,
same tags as raw) carry ``mean_<f>``, ``min_<f>``, ``max_<f>``, ``count_<f>``, ``sum_<f>`` for
every field ``f``. A window is computed once it has ended (the window still in progress is
answered from raw by the query API, so it is never re-read whole again and again while it
fills up), within ``WRITER_ROLLUP_INTERVAL_S``; an ended hour touched again by late data is
recomputed too, at most once every ``WRITER_ROLLUP_REPEAT_S`` (a gateway replaying its backlog
into it touches it with every batch). A writer that dies holding pending windows leaves them
to the start-up sweep, which recomputes the recent ended windows of every machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from itertools import repeat
from operator import itemgetter, mod, sub
from typing import Any

from prometheus_client import Counter

from shared.errors import InfluxQueryError, InfluxRejected, InfluxUnavailable
from shared.influx import InfluxClient, Series, any_of, quote_ident
from shared.lineprotocol import MEASUREMENT, line

log = logging.getLogger(__name__)

HOUR_NS = 3600 * 10**9
_TS = itemgetter("ts")
_MACHINE = itemgetter("machine_id")
DAY_NS = 24 * HOUR_NS
STATS = ("mean", "min", "max", "count", "sum")
MACHINES_PER_QUERY = 100
TAGS = "machine_id, factory_id, sensor_type, location"

ROLLUPS = Counter("millrace_writer_rollup_windows_total", "Tier windows recomputed", ["tier"])
ROLLUP_ERRORS = Counter("millrace_writer_rollup_errors_total", "Failed rollup rounds")


def hourly_select(fields: Iterable[str]) -> str:
    parts = []
    for f in fields:
        q = quote_ident(f)
        parts += [f"{stat}({q}) AS {quote_ident(f'{stat}_{f}')}" for stat in STATS]
    return ", ".join(parts)


def daily_select(fields: Iterable[str]) -> str:
    """Daily from hourly: min of mins, max of maxes, sums of counts and sums (mean = sum/count)."""
    parts = []
    for f in fields:
        parts += [
            f"min({quote_ident('min_' + f)}) AS {quote_ident('min_' + f)}",
            f"max({quote_ident('max_' + f)}) AS {quote_ident('max_' + f)}",
            f"sum({quote_ident('count_' + f)}) AS {quote_ident('count_' + f)}",
            f"sum({quote_ident('sum_' + f)}) AS {quote_ident('sum_' + f)}",
        ]
    return ", ".join(parts)


def tier_lines(series_list: list[Series], fields: Iterable[str], daily: bool) -> list[str]:
    fields = list(fields)
    out = []
    for s in series_list:
        tags = {k: v for k, v in s.tags.items() if v}
        for row in s.values:
            values = dict(zip(s.columns, row, strict=False))
            point: dict[str, float] = {}
            for f in fields:
                count = values.get(f"count_{f}")
                if not count:
                    continue
                point[f"count_{f}"] = float(count)
                point[f"sum_{f}"] = float(values[f"sum_{f}"])
                point[f"min_{f}"] = float(values[f"min_{f}"])
                point[f"max_{f}"] = float(values[f"max_{f}"])
                point[f"mean_{f}"] = (
                    float(values[f"sum_{f}"]) / float(count)
                    if daily
                    else float(values[f"mean_{f}"])
                )
            if point:
                out.append(line(MEASUREMENT, tags, point, int(values["time"])))
    return out


MAX_RUN_HOURS = 24 * 7
MAX_RUN_DAYS = 92


def runs(
    windows: dict[int, set[str]], width: int, max_windows: int
) -> list[tuple[int, int, set[str]]]:
    """Merge touched windows into runs of consecutive windows, one query each.

    Recomputing a window for a machine that was not touched in it is harmless (idempotent), and
    one query over a week of hours is far cheaper than 168 queries of one hour.
    """
    out: list[tuple[int, int, set[str]]] = []
    for w in sorted(windows):
        if out and out[-1][1] == w and (w - out[-1][0]) // width < max_windows:
            start, _, machines = out[-1]
            out[-1] = (start, w + width, machines | windows[w])
        else:
            out.append((w, w + width, set(windows[w])))
    return out


class Rollup:
    def __init__(
        self,
        influx: InfluxClient,
        fields: list[str],
        interval_s: float,
        repeat_s: float = 0.0,
    ) -> None:
        self.influx = influx
        self.fields = fields
        self.interval_s = interval_s
        # An hour is recomputed from all of its raw points each time: at most this often, or
        # a busy hour is re-read many times over (every round, by every writer).
        self.repeat_s = repeat_s
        self._done_at: dict[int, float] = {}  # hour → when it was last recomputed
        self._hours: dict[int, set[str]] = {}
        self._days: dict[int, set[str]] = {}  # days whose hours changed, waiting to be rolled up
        # Windows in progress at start-up, for every machine: a writer that died in them took
        # the list of machines it had touched with it.
        self._sweep_hours: set[int] = set()
        self._sweep_days: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def touched(self, readings: Iterable[dict[str, Any]]) -> None:
        """Note the hour windows of readings just stored (called after a successful write).

        C-level over the readings (``map``, ``zip``, a set); Python only per distinct
        (hour, machine) pair.
        """
        readings = list(readings)
        stamps = list(map(_TS, readings))
        hour_starts = map(sub, stamps, map(mod, stamps, repeat(HOUR_NS)))
        hours = self._hours
        for hour, mid in set(zip(hour_starts, map(_MACHINE, readings), strict=True)):
            hours.setdefault(int(hour), set()).add(str(mid))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="writer-rollup")

    async def stop(self) -> None:
        """One last round so the windows of the final batches are not left stale."""
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)
            await self.run_once(final=self._stopping.is_set())

    async def run_once(self, now_ns: int | None = None, *, final: bool = False) -> int:
        """Recompute every touched window that has ended; on failure they stay pending for the
        next round. ``final`` (shutdown): every pending window, ended or not — what was stored
        so far is aggregated, and nobody may be left to do it later. ``now_ns``: the wall clock
        (tests move it)."""
        hours, self._hours = self._hours, {}
        now = time.monotonic()
        now_ns = time.time_ns() if now_ns is None else now_ns
        if final:
            now_ns = max([now_ns, *(h + HOUR_NS for h in hours), *(d + DAY_NS for d in self._days)])
            self._done_at.clear()
        last = self._done_at
        for hour in [
            h
            for h in hours
            if h + HOUR_NS > now_ns  # still being written: history reads it from raw
            or now - last.get(h, float("-inf")) < self.repeat_s  # recomputed moments ago
        ]:
            self._hours[hour] = hours.pop(hour)  # its turn comes later
        for hour in [h for h, at in last.items() if now - at >= self.repeat_s]:
            del last[hour]
        for hour in hours:
            last[hour] = now
        if (
            not hours
            and not any(d + DAY_NS <= now_ns for d in self._days)
            and not any(h + HOUR_NS <= now_ns for h in self._sweep_hours)
            and not any(d + DAY_NS <= now_ns for d in self._sweep_days)
        ):
            return 0
        done = 0
        try:
            for hour in sorted(h for h in self._sweep_hours if h + HOUR_NS <= now_ns):
                await self.hourly(hour, hour + HOUR_NS, None)
                self._sweep_hours.discard(hour)
                self._sweep_days.add(hour - hour % DAY_NS)
            for day in sorted(d for d in self._sweep_days if d + DAY_NS <= now_ns):
                if not any(h - h % DAY_NS == day for h in self._sweep_hours):
                    await self.daily(day, day + DAY_NS, None)
                    self._sweep_days.discard(day)
            for start, end, machines in runs(hours, HOUR_NS, MAX_RUN_HOURS):
                await self.hourly(start, end, sorted(machines))
                done += (end - start) // HOUR_NS
                for hour in range(start, end, HOUR_NS):
                    self._days.setdefault(hour - hour % DAY_NS, set()).update(machines)
            # A day is aggregated from its hours once it has ended (until then history reads
            # the current day from raw), and again whenever late data changed one of its hours.
            days = {d: m for d, m in self._days.items() if d + DAY_NS <= now_ns}
            for start, end, machines in runs(days, DAY_NS, MAX_RUN_DAYS):
                await self.daily(start, end, sorted(machines))
                for day in range(start, end, DAY_NS):
                    self._days.pop(day, None)
        except (InfluxUnavailable, InfluxRejected, InfluxQueryError) as e:
            ROLLUP_ERRORS.inc()
            for hour, machines in hours.items():
                self._hours.setdefault(hour, set()).update(machines)
                self._done_at.pop(hour, None)  # not done after all: retry next round
            log.warning(
                "rollup round failed (%s); retrying next round", e, extra={"dependency": "influxdb"}
            )
        return done

    async def hourly(self, start: int, end: int, machines: list[str] | None) -> None:
        await self._aggregate("hourly", start, end, machines)

    async def daily(self, start: int, end: int, machines: list[str] | None) -> None:
        await self._aggregate("daily", start, end, machines)

    async def sweep(self, hours_back: int = 2) -> None:
        """Recompute the recent ended windows of every machine (start-up: cover a writer that
        died holding pending windows)."""
        now = time.time_ns()
        hour = now - now % HOUR_NS
        self._sweep_hours.add(hour)  # in progress: rolled up for every machine once it ends
        self._sweep_days.add(now - now % DAY_NS)
        await self.hourly(hour - hours_back * HOUR_NS, hour, None)
        day = hour - hours_back * HOUR_NS
        day -= day % DAY_NS
        if day < now - now % DAY_NS:
            await self.daily(day, now - now % DAY_NS, None)

    async def _aggregate(self, tier: str, start: int, end: int, machines: list[str] | None) -> None:
        s = self.influx.settings
        daily = tier == "daily"
        source_rp, target_rp = (s.hourly_rp, s.daily_rp) if daily else (s.raw_rp, s.hourly_rp)
        select = daily_select(self.fields) if daily else hourly_select(self.fields)
        bucket = "1d" if daily else "1h"
        src = f"{quote_ident(s.database)}.{quote_ident(source_rp)}.{quote_ident(MEASUREMENT)}"
        chunks: list[list[str] | None] = (
            [None]
            if machines is None
            else [
                machines[i : i + MACHINES_PER_QUERY]
                for i in range(0, len(machines), MACHINES_PER_QUERY)
            ]
        )
        for chunk in chunks:
            cond = f"time >= {start} AND time < {end}"
            if chunk is not None:
                cond = f"{any_of('machine_id', chunk)} AND {cond}"
            statement = (
                f"SELECT {select} FROM {src} WHERE {cond}"
                f" GROUP BY time({bucket}), {TAGS} fill(none)"
            )
            [series] = await self.influx.query(statement)
            lines = tier_lines(series, self.fields, daily)
            if lines:
                await self.influx.write("\n".join(lines).encode(), rp=target_rp)
            ROLLUPS.labels(tier).inc(len(lines))
