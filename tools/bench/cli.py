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
from collections import defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime

import aiormq
import httpx

from shared.errors import InfluxQueryError, InfluxUnavailable, MillraceError
from shared.settings import PostgresSettings
from tools.bench import freshness, history, http_phase, influx_ceiling, mqtt_phase
from tools.bench.httpload import IngestBodies
from tools.bench.memory import MemoryWatch
from tools.bench.stack import CpuCensus, instances, load_average, login_token, not_ready, wait_quiet
from tools.bench.stored import drop_factories, wait_stored, writers_written
from tools.bench.table import Row, machine, ms, num, render
from tools.common import logs
from tools.common.stats import median, percentile
from tools.simulator.registry import ensure_machines

log = logging.getLogger("tools.bench")

RSS_LIMIT_MB = 200
CPU_NOTES = (
    ("http.stored", "HTTP throughput runs"),
    ("mqtt.stored", "MQTT runs"),
)
HISTORY_KINDS = (
    ("raw", "1,000-point raw page"),
    ("7d@1h", "7 days at 1h"),
    ("30d@1d", "30 days at 1d"),
)


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="runs per figure (median reported)")
    p.add_argument("--machines", type=int, default=50, help="machines per HTTP batch")
    p.add_argument("--readings-per-machine", type=int, default=2, help="per machine per batch")
    p.add_argument("--http-requests", type=int, default=10_000, help="batches per throughput run")
    p.add_argument("--http-processes", type=int, default=2, help="HTTP load processes")
    p.add_argument("--http-connections", type=int, default=8, help="connections per process")
    p.add_argument("--latency-rate", type=float, default=1000.0, help="requests/s, fixed")
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--mqtt-ticks", type=int, default=2000, help="messages per machine per run")
    p.add_argument("--mqtt-processes", type=int, default=2, help="MQTT publisher processes")
    p.add_argument("--influx-points", type=int, default=500_000, help="ceiling run size")
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
        choices=("http", "latency", "mqtt", "fresh", "history"),
        help="measure only these figures (repeatable)",
    )
    return p.parse_args(argv)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.values: dict[str, list[float]] = defaultdict(list)
        self.discarded: list[str] = []
        self.cores: dict[str, list[dict[str, float]]] = defaultdict(list)
        self.other_cores: list[float] = []
        self.loads: list[float] = []
        self.waited_s = 0.0
        self.unquiet_runs = 0
        self.watch = MemoryWatch()
        self.backlog: list[tuple[int, dict[str, float]]] = []
        self.token = ""
        self.executor: ProcessPoolExecutor | None = None
        self.garbage: list[str] = []  # factories whose readings are dropped once written

    def wants(self, what: str) -> bool:
        return not self.args.only or what in self.args.only

    # ------------------------------------------------------------------ guarded runs
    async def measured(self, name: str, run: Callable[[], Awaitable[dict[str, float]]]) -> None:
        """One measured run, on a quiet machine, repeated when something disturbed it."""
        for attempt in range(1, 4):
            quiet, waited = await asyncio.to_thread(wait_quiet, self.args.quiet_wait, log.info)
            self.waited_s += waited
            if not quiet:
                self.unquiet_runs += 1
                log.warning("%s: machine still busy after %.0f s; measuring anyway", name, waited)
            try:
                await self.settle()
                await self.clean()
                self.loads.append(load_average())
                before = CpuCensus.take()
                values = await run()
            except DISTURBED as e:
                # Most likely another engineer's chaos run or disruptive test stopping things.
                self.discarded.append(f"{name}: {type(e).__name__}: {e}")
                log.warning("%s: run discarded (%s), attempt %d", name, e, attempt)
                await self.wait_ready()
                continue
            after = CpuCensus.take()
            restarted = after.restarted(before)
            lost = await asyncio.to_thread(not_ready)
            if restarted or lost:
                why = f"restarted {restarted}" if restarted else f"not ready {lost}"
                self.discarded.append(f"{name}: {why}")
                log.warning("%s: run discarded (%s), attempt %d", name, why, attempt)
                await self.wait_ready()
                continue
            for key, value in values.items():
                self.values[key].append(value)
            cores = after.since(before)
            self.other_cores.append(cores["other"])
            parts = after.breakdown(before)
            self.cores[name].append(parts | {"bench": cores["bench"]})
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
        await drop_factories(garbage)

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
        rate = await asyncio.to_thread(influx_ceiling.measure, bodies)
        log.info("InfluxDB ceiling: %.0f points/s from one client", rate)
        return {"http.ceiling": rate}

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
        self.backlog.append(self.watch.backlog(t.started, t.finished))
        log.info(
            "HTTP: %d readings stored in %.2f s = %.0f/s (accepted at the door %.0f/s, %d retried)",
            t.stored,
            t.seconds,
            t.stored_per_s,
            t.accepted_per_s,
            t.retried,
        )
        return {"http.stored": t.stored_per_s, "http.door": t.accepted_per_s}

    async def http_latency(self, machines: list[str]) -> dict[str, float]:
        a = self.args
        assert self.executor is not None
        bodies = IngestBodies(
            machines,
            self.factory("l"),
            time.time_ns() // 1000 - 60_000_000,
            a.readings_per_machine,
        )
        lat = await http_phase.fixed_rate(
            self.executor,
            http_phase.target("ingest_gateway", self.token),
            a.latency_rate,
            a.latency_seconds,
            a.http_processes,
            64,
            bodies,
        )
        floor = await http_phase.fixed_rate(
            self.executor,
            http_phase.target("ingest_gateway", self.token),
            a.latency_rate,
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
        storing = asyncio.ensure_future(wait_stored(total, baseline, factory, since_ns, 300))
        started = await self._publish(
            machines, factory, "factory/{factory_id}/machine/{machine_id}/telemetry"
        )
        done_at, stored = await storing
        if stored < total:
            raise Discarded(f"only {stored} of {total} MQTT readings stored in time")
        rate = total / (done_at - started)
        self.backlog.append(self.watch.backlog(started, done_at))
        log.info("MQTT end to end: %d readings stored at %.0f messages/s", total, rate)
        return {"mqtt.stored": rate}

    async def fresh(self, machines: list[str], probe: str) -> dict[str, float]:
        a = self.args
        assert self.executor is not None
        per_request = len(machines) * a.readings_per_machine
        if a.fresh_load:
            load = a.fresh_load
        elif self.values["http.stored"]:
            load = median(self.values["http.stored"]) / 2
        else:
            raise RuntimeError("give --fresh-load, or measure http in the same run")
        rate = load / per_request
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
        for kind, _ in HISTORY_KINDS:
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
    async def run(self) -> str:
        a = self.args
        bad = await asyncio.to_thread(not_ready)
        if bad:
            raise RuntimeError(f"the pipeline is not ready ({', '.join(bad)}): run `make up`")
        self.token = await asyncio.to_thread(login_token)
        pg = PostgresSettings()
        machines = [m.id for m in await ensure_machines(pg, "bench", a.machines)]
        [probe] = [m.id for m in await ensure_machines(pg, "bench-probe", 1)]
        data = await history.dataset() if self.wants("history") else None
        bodies = (
            await asyncio.to_thread(influx_ceiling.build_bodies, a.influx_points, 5000)
            if self.wants("http")
            else []
        )
        workers = max(a.http_processes, a.mqtt_processes)
        self.executor = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")
        )
        self.watch.start()
        try:
            for r in range(1, a.runs + 1):
                log.info("---- round %d of %d", r, a.runs)
                self.token = await asyncio.to_thread(login_token)  # tokens live 15 minutes
                if self.wants("http"):
                    await self.measured("http.ceiling", lambda: self.influx_ceiling(bodies))
                    await self.measured("http.stored", lambda: self.http_max(machines))
                if self.wants("latency"):
                    await self.measured("lat", lambda: self.http_latency(machines))
                if self.wants("mqtt"):
                    await self.measured("mqtt.ceiling", lambda: self.mqtt_ceiling(machines))
                    await self.measured("mqtt.stored", lambda: self.mqtt_e2e(machines))
                if self.wants("fresh"):
                    await self.measured("fresh", lambda: self.fresh(machines, probe))
                if data is not None:
                    await self.measured("hist", lambda: self.history(data))
        finally:
            await self.settle()
            self.garbage += [freshness.PROBE_FACTORY, freshness.FLOOR_FACTORY]
            await self.clean()
            await self.watch.stop()
            self.executor.shutdown()
        return self.table()

    def cpu_note(self, name: str, label: str) -> str:
        """Cores each process used during a kind of run (median over runs): what bounds it."""
        runs = self.cores[name]
        keys = sorted(
            {k for r in runs for k in r}, key=lambda k: -median([r.get(k, 0) for r in runs])
        )
        parts = [f"{k} {median([r.get(k, 0.0) for r in runs]):.2f}" for k in keys]
        return f"Cores used during {label}: " + ", ".join(
            p for p in parts if not p.endswith(" 0.00")
        )

    def table(self) -> str:
        v = {k: median(vals) for k, vals in self.values.items() if vals}
        runs = min((len(x) for x in self.values.values()), default=0)
        rows = [*self._door_rows(v), *self._history_rows(v), *self._memory_rows()]
        title = (
            f"Millrace benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — medians of {runs} runs"
            f" — {machine()}"
        )
        return render(rows, title, self._notes(v))

    def _door_rows(self, v: dict[str, float]) -> list[Row]:
        """Throughput and latency of the two doors, and ingest→queryable freshness."""
        a = self.args
        rows: list[Row] = []
        per = a.machines * a.readings_per_machine
        if "http.stored" in v:
            ratio = v["http.stored"] / v["http.ceiling"]
            met = v["http.stored"] >= 100_000 and ratio >= 0.35
            rows.append(
                Row(
                    f"HTTP readings/s stored end to end ({per}/batch, {a.machines} machines)",
                    num(v["http.stored"]),
                    f"InfluxDB line protocol, 1 client: {num(v['http.ceiling'])}",
                    f"{ratio:.2f}",
                    "≥ 100,000 and ≥ 0.35",
                    "yes" if met else "NO",
                )
            )
        if "lat.p99" in v:
            rows.append(
                Row(
                    f"HTTP ingest p50 / p99 at {a.latency_rate:,.0f} req/s ({per} readings each)",
                    f"{ms(v['lat.p50'])} / {ms(v['lat.p99'])} ms",
                    f"GET /health at the same rate: {ms(v['lat.floor.p50'])} / "
                    f"{ms(v['lat.floor.p99'])} ms",
                    "-",
                    "p99 ≤ 25 ms",
                    "yes" if v["lat.p99"] <= 25 else "NO",
                )
            )
        if "mqtt.stored" in v:
            ratio = v["mqtt.stored"] / v["mqtt.ceiling"]
            rows.append(
                Row(
                    "MQTT QoS 1 single-reading messages/s stored end to end",
                    num(v["mqtt.stored"]),
                    f"Mosquitto publish→deliver alone: {num(v['mqtt.ceiling'])}",
                    f"{ratio:.2f}",
                    "≥ 0.7",
                    "yes" if ratio >= 0.7 else "NO",
                )
            )
        if "fresh.p99" in v:
            rows.append(
                Row(
                    f"ingest→queryable p50 / p99 at half load ({num(v['fresh.load'])} readings/s)",
                    f"{ms(v['fresh.p50'])} / {ms(v['fresh.p99'])} ms",
                    f"InfluxDB write→read: {ms(v['fresh.floor.p50'])} / "
                    f"{ms(v['fresh.floor.p99'])} ms",
                    "-",
                    "p99 ≤ 500 ms",
                    "yes" if v["fresh.p99"] <= 500 else "NO",
                )
            )
        return rows

    @staticmethod
    def _history_rows(v: dict[str, float]) -> list[Row]:
        return [
            Row(
                f"history p95: {label} ({v[f'hist.{kind}.rows']:.0f} rows, uncached)",
                f"{ms(v[f'hist.{kind}'])} ms",
                f"same InfluxQL straight to InfluxDB: {ms(v[f'hist.{kind}.influx'])} ms",
                f"{v[f'hist.{kind}'] / v[f'hist.{kind}.influx']:.1f}x",
                "-",
                "-",
            )
            for kind, label in HISTORY_KINDS
            if f"hist.{kind}" in v
        ]

    def _memory_rows(self) -> list[Row]:
        peak = self.watch.peak()
        depth = max((b[0] for b in self.backlog), default=0)
        rows: list[Row] = []
        for service in sorted(peak):
            growth = [b[1].get(service, 0.0) for b in self.backlog if b[0] > 0]
            grew = max(growth, default=0.0)
            flat = "flat" if grew < 10 else f"grew {grew:+.0f} MB"
            procs = self.watch.processes.get(service, 1)
            rows.append(
                Row(
                    f"peak RSS {service} ({procs} process{'es' if procs > 1 else ''}, largest)",
                    f"{peak[service]:.0f} MB",
                    f"while backlog built (≤ {num(depth)} msgs): {flat}",
                    "-",
                    f"≤ {RSS_LIMIT_MB} MB",
                    "yes" if peak[service] <= RSS_LIMIT_MB else "NO",
                )
            )
        return rows

    def _notes(self, v: dict[str, float]) -> list[str]:
        other = median(self.other_cores) if self.other_cores else 0.0
        return [
            f"HTTP door (202s) during the throughput runs: {num(v.get('http.door', 0))}"
            f" readings/s; fixed-rate runs achieved {v.get('lat.rps', 0):,.0f} req/s.",
            *(self.cpu_note(name, label) for name, label in CPU_NOTES if self.cores.get(name)),
            f"Quiet machine: other processes used {other:.2f} cores (median over runs; at most"
            f" {max(self.other_cores, default=0):.2f}); 1-min load average before runs"
            f" {min(self.loads, default=0):.1f} to {max(self.loads, default=0):.1f};"
            f" {self.waited_s:.0f} s spent waiting for other jobs; {self.unquiet_runs} run(s) not"
            f" quiet; {len(self.discarded)} discarded"
            + (f" ({'; '.join(self.discarded)})" if self.discarded else "")
            + ".",
            "Instances: " + ", ".join(f"{i.name}" for i in instances()),
        ]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logs.configure(fmt="%(asctime)s %(levelname)s %(message)s")
    print(asyncio.run(Bench(args).run()))
