"""``python -m tools.bench`` (``make bench``): the benchmark table (README "Performance").

Needs the pipeline running (``make bench`` runs ``make up`` first); starts nothing itself. Load
comes from separate processes. Every figure is the median of ``--runs`` runs (default 3), and
its ceiling or floor is measured in the same rounds, so both saw the same machine. Before each
measured run the benchmark waits until no other heavy job (tests, chaos, simulators) runs; a
run during which a pipeline process was replaced, or a service stopped being ready, is
discarded and repeated.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor

import aiormq
import httpx
import psycopg

from shared.errors import InfluxQueryError, InfluxUnavailable, MillraceError
from shared.settings import PostgresSettings
from tools.bench import figures, freshness, history, http_phase, influx_ceiling, mqtt_phase, report
from tools.bench.history import Dataset
from tools.bench.httpload import IngestBodies
from tools.bench.memory import MemoryWatch
from tools.bench.stack import CpuCensus, load_average, login_token, not_ready, wait_quiet
from tools.bench.stored import drop_readings, wait_stored, writers_written
from tools.common import logs
from tools.common.stats import median, percentile
from tools.simulator.registry import ensure_machines, remove_machines

log = logging.getLogger("tools.bench")

# Modules adding figures to the table (tools/bench/figures.py): one line each.
FIGURE_MODULES: tuple[str, ...] = ("tools.bench.live", "tools.bench.mqtt_drain")
BUILT_IN = ("http", "latency", "mqtt", "fresh", "history")


class Discarded(MillraceError):
    """A run disturbed by something else (a restart, a service not ready): measure it again."""


# What a run fails with when a dependency or service goes away under it.
DISTURBED: tuple[type[BaseException], ...] = (
    Discarded,
    httpx.HTTPError,
    OSError,
    aiormq.exceptions.AMQPError,
    InfluxUnavailable,
    InfluxQueryError,
)


def parse_args(argv: list[str] | None, extra: list[figures.Figure]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="runs per figure (median reported)")
    p.add_argument("--machines", type=int, default=50, help="machines per HTTP batch")
    p.add_argument("--readings-per-machine", type=int, default=2, help="per machine per batch")
    p.add_argument("--http-requests", type=int, default=10_000, help="batches per throughput run")
    p.add_argument("--http-processes", type=int, default=2, help="HTTP load processes")
    p.add_argument("--http-connections", type=int, default=8, help="connections per process")
    p.add_argument(
        "--latency-rate",
        type=float,
        help="requests/s of the latency run (default: half the HTTP maximum measured)",
    )
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--mqtt-ticks", type=int, default=2000, help="messages per machine per run")
    p.add_argument("--mqtt-processes", type=int, default=2, help="MQTT publisher processes")
    p.add_argument("--influx-points", type=int, default=500_000, help="points per ceiling pass")
    p.add_argument(
        "--influx-seconds", type=float, default=6.0, help="least length of a ceiling run"
    )
    p.add_argument("--fresh-seconds", type=float, default=12.0, help="half-load run length")
    p.add_argument(
        "--fresh-load",
        type=float,
        help="readings/s of the background load (default: half the HTTP maximum measured)",
    )
    p.add_argument("--history-queries", type=int, default=40, help="queries per kind per run")
    p.add_argument("--quiet-wait", type=float, default=900.0, help="max wait for a quiet machine")
    p.add_argument(
        "--only",
        action="append",
        choices=(*BUILT_IN, *(f.name for f in extra)),
        help="measure only these figures (repeatable)",
    )
    return p.parse_args(argv)


class Bench:
    """The runner; also the :class:`figures.Context` a registered figure's run gets."""

    def __init__(self, args: argparse.Namespace, extra: list[figures.Figure]) -> None:
        self.args = args
        self.extra = extra
        self.m = report.Measurements()
        self.values = self.m.values
        self.watch = MemoryWatch()
        self.token = ""
        self.machines: list[str] = []
        self.registered: list[str] = []  # machines this run registered: removed when it ends
        self.executor: ProcessPoolExecutor | None = None
        self.garbage: list[str] = []  # factories whose readings are dropped once written

    @property
    def pool(self) -> Executor:
        assert self.executor is not None, "load processes start with the run"
        return self.executor

    def note_backlog(self, started: float, finished: float) -> None:
        self.m.backlog.append(self.watch.backlog(started, finished))

    def wants(self, what: str) -> bool:
        return not self.args.only or what in self.args.only

    # ------------------------------------------------------------------ guarded runs
    async def measured(self, name: str, run: Callable[[], Awaitable[dict[str, float]]]) -> None:
        """One measured run, on a quiet machine, repeated when something disturbed it."""
        for attempt in range(1, 4):
            quiet, waited = await asyncio.to_thread(wait_quiet, self.args.quiet_wait, log.info)
            self.m.waited_s += waited
            if not quiet:
                self.m.unquiet_runs += 1
                log.warning("%s: machine still busy after %.0f s; measuring anyway", name, waited)
            try:
                await self.settle()
                await self.clean()
                self.m.loads.append(load_average())
                before = CpuCensus.take()
                values = await run()
            except DISTURBED as e:
                # Most likely another engineer's chaos run or disruptive test stopping things.
                self.m.discarded.append(f"{name}: {type(e).__name__}: {e}")
                log.warning("%s: run discarded (%s), attempt %d", name, e, attempt)
                await self.wait_ready()
                continue
            after = CpuCensus.take()
            restarted = after.restarted(before)
            lost = await asyncio.to_thread(not_ready)
            if restarted or lost:
                why = f"restarted {restarted}" if restarted else f"not ready {lost}"
                self.m.discarded.append(f"{name}: {why}")
                log.warning("%s: run discarded (%s), attempt %d", name, why, attempt)
                await self.wait_ready()
                continue
            for key, value in values.items():
                self.values[key].append(value)
            cores = after.since(before)
            self.m.other_cores.append(cores["other"])
            parts = after.breakdown(before)
            self.m.cores[name].append(parts | {"bench": cores["bench"]})
            log.info(
                "%s: done (cores used: pipeline %.2f [%s], bench %.2f, other %.2f)",
                name,
                cores["pipeline"],
                ", ".join(f"{k} {v:.2f}" for k, v in parts.items() if v >= 0.01),
                cores["bench"],
                cores["other"],
            )
            return
        raise RuntimeError(f"{name}: disturbed three times in a row; try again later")

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 300
        while bad := await asyncio.to_thread(not_ready):
            if time.monotonic() > deadline:
                raise RuntimeError(f"services not ready: {bad}")
            await asyncio.sleep(2)  # someone else is restarting the pipeline
        self.token = await asyncio.to_thread(login_token)

    async def clean(self) -> None:
        garbage, self.garbage = self.garbage, []
        await drop_readings(garbage, self.machines)

    def factory(self, kind: str) -> str:
        """A fresh factory id for one run's readings (dropped after the run)."""
        name = f"bench-{kind}{uuid.uuid4().hex[:8]}"
        self.garbage.append(name)
        return name

    async def settle(self, timeout_s: float = 120) -> None:
        """Wait until the previous run's backlog is written (queue empty, counters still)."""
        deadline = time.monotonic() + timeout_s
        last = -1
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline:
                written = await writers_written(client)
                depth = self.watch.samples[-1].queue if self.watch.samples else 0
                if written == last and depth == 0:
                    return
                last = written
                await asyncio.sleep(1.0)  # the writers have no "idle" notification

    # ------------------------------------------------------------------ figures
    async def influx_ceiling(self, bodies: list[bytes]) -> dict[str, float]:
        rate, seconds = await asyncio.to_thread(
            influx_ceiling.measure, bodies, self.args.influx_seconds
        )
        log.info("InfluxDB ceiling: %.0f points/s from one client (%.1f s)", rate, seconds)
        return {"http.ceiling": rate, "http.ceiling.s": seconds}

    async def http_max(self, machines: list[str]) -> dict[str, float]:
        a = self.args
        assert self.executor is not None
        t = await http_phase.throughput(
            self.executor,
            self.token,
            machines,
            self.factory("h"),
            a.http_requests,
            a.http_processes,
            a.http_connections,
            a.readings_per_machine,
        )
        if t.statuses.get(202, 0) != a.http_requests:
            raise Discarded(f"not every batch accepted: {t.statuses}")
        if t.stored < t.readings:
            raise Discarded(f"only {t.stored} of {t.readings} readings stored in time")
        self.note_backlog(t.started, t.finished)
        log.info(
            "HTTP: %d readings stored in %.2f s = %.0f/s (accepted at the door %.0f/s, %d retried)",
            t.stored,
            t.seconds,
            t.stored_per_s,
            t.accepted_per_s,
            t.retried,
        )
        return {"http.stored": t.stored_per_s, "http.door": t.accepted_per_s}

    def half_load(self, explicit: float | None, option: str) -> float:
        """Readings/s for a run at half load: ``explicit``, else half the HTTP maximum."""
        if explicit:
            return explicit
        if self.values["http.stored"]:
            return median(self.values["http.stored"]) / 2
        raise RuntimeError(f"give {option}, or measure http in the same run")

    async def http_latency(self, machines: list[str]) -> dict[str, float]:
        a = self.args
        assert self.executor is not None
        per_request = len(machines) * a.readings_per_machine
        rate = (
            a.latency_rate
            if a.latency_rate
            else self.half_load(None, "--latency-rate") / per_request
        )
        bodies = IngestBodies(
            machines,
            self.factory("l"),
            time.time_ns() // 1000 - 60_000_000,
            a.readings_per_machine,
        )
        lat = await http_phase.fixed_rate(
            self.executor,
            http_phase.target("ingest_gateway", self.token),
            rate,
            a.latency_seconds,
            a.http_processes,
            64,
            bodies,
        )
        floor = await http_phase.fixed_rate(
            self.executor,
            http_phase.target("ingest_gateway", self.token),
            rate,
            min(a.latency_seconds, 5.0),
            a.http_processes,
            64,
            None,
            path="/health",
        )
        if set(lat.statuses) != {202}:
            raise Discarded(f"answers other than 202 at a fixed rate: {lat.statuses}")
        log.info(
            "HTTP latency at %.0f req/s: p50 %.1f ms, p99 %.1f ms (/health: p50 %.1f, p99 %.1f)",
            lat.achieved_rps,
            lat.p50_ms,
            lat.p99_ms,
            floor.p50_ms,
            floor.p99_ms,
        )
        return {
            "lat.p50": lat.p50_ms,
            "lat.p99": lat.p99_ms,
            "lat.rps": lat.achieved_rps,
            "lat.rate": rate,
            "lat.floor.p50": floor.p50_ms,
            "lat.floor.p99": floor.p99_ms,
        }

    async def _publish(self, machines: list[str], factory: str, template: str) -> float:
        a = self.args
        assert self.executor is not None
        loop = asyncio.get_running_loop()
        start_at = time.time() + 0.5
        start_us = time.time_ns() // 1000 - 60_000_000
        n = a.mqtt_processes
        jobs = [
            mqtt_phase.PublishJob(
                machines[p::n], factory, a.mqtt_ticks, start_at, start_us, template
            )
            for p in range(n)
        ]
        results = await asyncio.gather(
            *(loop.run_in_executor(self.executor, mqtt_phase.publish, j) for j in jobs)
        )
        acked = sum(stats.mqtt_acked for _, stats in results)
        if acked != len(machines) * a.mqtt_ticks:
            raise Discarded(f"only {acked} MQTT messages acknowledged")
        return min(started for started, _ in results)

    async def mqtt_ceiling(self, machines: list[str]) -> dict[str, float]:
        factory = self.factory("c")
        total = len(machines) * self.args.mqtt_ticks
        sub = await asyncio.to_thread(mqtt_phase.CeilingSubscriber, factory)
        try:
            started = await self._publish(machines, factory, mqtt_phase.CEILING_TOPIC)
            if not await asyncio.to_thread(sub.wait_for, total, 60):
                raise Discarded(f"mosquitto_sub received {sub.received} of {total}")
            rate = total / (sub.last_at - started)
        finally:
            await asyncio.to_thread(sub.close)
        log.info("Mosquitto alone: %.0f QoS 1 messages/s delivered", rate)
        return {"mqtt.ceiling": rate}

    async def mqtt_e2e(self, machines: list[str]) -> dict[str, float]:
        factory = self.factory("m")
        total = len(machines) * self.args.mqtt_ticks
        since_ns = time.time_ns() - 61 * 10**9
        async with httpx.AsyncClient(timeout=5) as client:
            baseline = await writers_written(client)
        storing = asyncio.ensure_future(wait_stored(total, baseline, machines, since_ns, 300))
        started = await self._publish(
            machines, factory, "factory/{factory_id}/machine/{machine_id}/telemetry"
        )
        done_at, stored = await storing
        if stored < total:
            raise Discarded(f"only {stored} of {total} MQTT readings stored in time")
        rate = total / (done_at - started)
        self.note_backlog(started, done_at)
        log.info("MQTT end to end: %d readings stored at %.0f messages/s", total, rate)
        return {"mqtt.stored": rate}

    async def fresh(self, machines: list[str], probe: str) -> dict[str, float]:
        a = self.args
        assert self.executor is not None
        per_request = len(machines) * a.readings_per_machine
        rate = self.half_load(a.fresh_load, "--fresh-load") / per_request
        bodies = IngestBodies(
            machines,
            self.factory("f"),
            time.time_ns() // 1000 - 60_000_000,
            a.readings_per_machine,
        )
        loading = asyncio.ensure_future(
            http_phase.fixed_rate(
                self.executor,
                http_phase.target("ingest_gateway", self.token),
                rate,
                a.fresh_seconds,
                a.http_processes,
                64,
                bodies,
            )
        )
        probes = await freshness.probe_while(loading, self.token, probe, 0.25, 2.0)
        await loading
        if probes.failures or len(probes.api_ms) < 10:
            raise Discarded(f"{probes.failures} probes failed, {len(probes.api_ms)} succeeded")
        log.info(
            "ingest→queryable at %.0f readings/s: p50 %.0f ms, p99 %.0f ms (%d probes)",
            rate * per_request,
            percentile(probes.api_ms, 50),
            percentile(probes.api_ms, 99),
            len(probes.api_ms),
        )
        return {
            "fresh.p50": percentile(probes.api_ms, 50),
            "fresh.p99": percentile(probes.api_ms, 99),
            "fresh.floor.p50": percentile(probes.influx_ms, 50),
            "fresh.floor.p99": percentile(probes.influx_ms, 99),
            "fresh.load": rate * per_request,
        }

    async def history(self, data: history.Dataset) -> dict[str, float]:
        values: dict[str, float] = {}
        for kind, _ in report.HISTORY_KINDS:
            t = await history.measure(data, self.token, kind, self.args.history_queries)
            values[f"hist.{kind}"] = t.api_p95_ms
            values[f"hist.{kind}.influx"] = t.influx_p95_ms
            values[f"hist.{kind}.rows"] = t.rows
            log.info(
                "history %s: p95 %.1f ms via the API, %.1f ms straight from InfluxDB (%d rows)",
                kind,
                t.api_p95_ms,
                t.influx_p95_ms,
                t.rows,
            )
        return values

    # ------------------------------------------------------------------ whole benchmark
    async def prepare(self) -> tuple[str, Dataset | None, list[bytes]]:
        """Machines, the freshness probe, the history dataset and the ceiling's bodies."""
        a = self.args
        bad = await asyncio.to_thread(not_ready)
        if bad:
            raise RuntimeError(f"the pipeline is not ready ({', '.join(bad)}): run `make up`")
        self.token = await asyncio.to_thread(login_token)
        pg = PostgresSettings()
        made = self.registered
        self.machines = [m.id for m in await ensure_machines(pg, "bench", a.machines, made)]
        [probe] = [m.id for m in await ensure_machines(pg, "bench-probe", 1, made)]
        data = await history.dataset() if self.wants("history") else None
        bodies = (
            await asyncio.to_thread(influx_ceiling.build_bodies, a.influx_points, 5000)
            if self.wants("http")
            else []
        )
        return probe, data, bodies

    async def http_round(self, r: int, bodies: list[bytes]) -> None:
        """The InfluxDB ceiling and the HTTP maximum, in alternating order from round to
        round, and their ratio in this round (the table reports the median ratio)."""
        ceiling = ("http.ceiling", lambda: self.influx_ceiling(bodies))
        stored = ("http.stored", lambda: self.http_max(self.machines))
        for name, run in (ceiling, stored) if r % 2 else (stored, ceiling):
            await self.measured(name, run)
        v = self.values
        v["http.ratio"].append(v["http.stored"][-1] / v["http.ceiling"][-1])

    async def round(self, r: int, probe: str, data: Dataset | None, bodies: list[bytes]) -> None:
        machines = self.machines
        self.token = await asyncio.to_thread(login_token)  # tokens live 15 minutes
        if self.wants("http"):
            await self.http_round(r, bodies)
        if self.wants("latency"):
            await self.measured("lat", lambda: self.http_latency(machines))
        if self.wants("mqtt"):
            await self.measured("mqtt.ceiling", lambda: self.mqtt_ceiling(machines))
            await self.measured("mqtt.stored", lambda: self.mqtt_e2e(machines))
        if self.wants("fresh"):
            await self.measured("fresh", lambda: self.fresh(machines, probe))
        for figure in self.extra:
            if self.wants(figure.name):
                await self.measured(figure.name, lambda f=figure: f.measure(self))  # type: ignore[misc]
        if data is not None:
            await self.measured("hist", lambda: self.history(data))

    async def run(self) -> str:
        """The rounds and their table; the machines the run registered go when it ends, however
        it ends (the history figure's machine stays: its seeded month is reused by later runs)."""
        try:
            return await self.rounds()
        finally:
            try:
                await remove_machines(PostgresSettings(), self.registered)
            except (psycopg.Error, OSError) as e:  # never in place of how the run itself ended
                log.warning("machines this run registered are left: %s (%s)", self.registered, e)

    async def rounds(self) -> str:
        a = self.args
        probe, data, bodies = await self.prepare()
        workers = max(a.http_processes, a.mqtt_processes)
        self.executor = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")
        )
        self.watch.start()
        try:
            for r in range(1, a.runs + 1):
                log.info("---- round %d of %d", r, a.runs)
                await self.round(r, probe, data, bodies)
        finally:
            await self.settle()
            self.garbage += [freshness.PROBE_FACTORY, freshness.FLOOR_FACTORY]
            await self.clean()
            await self.watch.stop()
            self.executor.shutdown()
        return self.table()

    def table(self) -> str:
        v = self.m.medians()
        rows = [row for f in self.extra if self.wants(f.name) for row in f.rows(self, v)]
        notes = [
            n
            for f in self.extra
            if self.wants(f.name) and f.notes is not None
            for n in f.notes(self, v)
        ]
        return report.table(self.args, self.m, self.watch, rows, notes)


def main(argv: list[str] | None = None) -> None:
    extra = figures.load(FIGURE_MODULES)
    args = parse_args(argv, extra)
    logs.configure(fmt="%(asctime)s %(levelname)s %(message)s")
    print(asyncio.run(Bench(args, extra).run()))
