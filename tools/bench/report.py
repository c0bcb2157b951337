"""From the runs' values to the printed table: the built-in rows, the CPU census per reading,
memory, and the notes on how quiet the machine was."""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tools.bench.memory import MemoryWatch
from tools.bench.stack import instances
from tools.bench.table import Row, machine, ms, num, render
from tools.common.stats import median

RSS_LIMIT_MB = 200
CPU_US_TARGET = 16.0  # pipeline CPU per reading, HTTP runs
HTTP_RATIO_TARGET = 0.35
CPU_NOTES = (
    ("http.stored", "HTTP throughput runs"),
    ("mqtt.stored", "MQTT runs"),
)
HISTORY_KINDS = (
    ("raw", "1,000-point raw page"),
    ("7d@1h", "7 days at 1h"),
    ("30d@1d", "30 days at 1d"),
)
# The census's names for the dependencies, as the table prints them.
DEPENDENCY_NAMES = {
    "beam.smp": "RabbitMQ",
    "influxd": "InfluxDB",
    "redis-server": "Redis",
    "postgres": "PostgreSQL",
    "mosquitto": "Mosquitto",
}


@dataclass(slots=True)
class Measurements:
    """Everything the runs collected: values by key (one per run) and what the machine did."""

    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cores: dict[str, list[dict[str, float]]] = field(default_factory=lambda: defaultdict(list))
    other_cores: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    backlog: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    waited_s: float = 0.0
    unquiet_runs: int = 0

    def medians(self) -> dict[str, float]:
        return {k: median(vals) for k, vals in self.values.items() if vals}

    def runs(self) -> int:
        return min((len(x) for x in self.values.values()), default=0)


def component(owner: str) -> str:
    """A census owner (``writer-1``, ``beam.smp``) as the service or dependency it is."""
    if owner in DEPENDENCY_NAMES:
        return DEPENDENCY_NAMES[owner]
    head, _, tail = owner.rpartition("-")
    return head if head and tail.isdigit() else owner


def us_per_reading(m: Measurements, run: str, rate_key: str) -> dict[str, float]:
    """CPU µs each component spent per reading during ``run`` (median over runs), instances of
    a service added up; ``bench`` is the load generator, not the pipeline."""
    per_run: list[dict[str, float]] = []
    for cores, rate in zip(m.cores.get(run, []), m.values.get(rate_key, []), strict=False):
        if rate <= 0:
            continue
        out: dict[str, float] = defaultdict(float)
        for owner, used in cores.items():
            out[component(owner)] += used * 1e6 / rate
        out["pipeline"] = sum(v for k, v in out.items() if k != "bench")
        per_run.append(out)
    keys = {k for r in per_run for k in r}
    return {k: median([r.get(k, 0.0) for r in per_run]) for k in keys}


def http_rows(a: argparse.Namespace, v: dict[str, float], cpu: dict[str, float]) -> list[Row]:
    per = a.machines * a.readings_per_machine
    rows: list[Row] = []
    if "http.stored" in v and "http.ratio" in v:
        ratio = v["http.ratio"]
        rows.append(
            Row(
                f"HTTP readings/s stored end to end ({per}/batch, {a.machines} machines)",
                num(v["http.stored"]),
                f"InfluxDB line protocol, 1 client: {num(v['http.ceiling'])}",
                f"{ratio:.2f}",
                f"≥ {HTTP_RATIO_TARGET}",
                "yes" if ratio >= HTTP_RATIO_TARGET else "NO",
            )
        )
    if "pipeline" in cpu:
        rows.append(
            Row(
                "pipeline CPU µs per stored reading (HTTP runs, census)",
                f"{cpu['pipeline']:.1f} µs",
                f"of which InfluxDB {cpu.get('InfluxDB', 0):.1f}, RabbitMQ "
                f"{cpu.get('RabbitMQ', 0):.1f}",
                "-",
                f"≤ {CPU_US_TARGET:.0f} µs",
                "yes" if cpu["pipeline"] <= CPU_US_TARGET else "NO",
            )
        )
    if "lat.p99" in v:
        rows.append(
            latency_row(
                v,
                "lat",
                f"HTTP ingest p50 / p99 at {v['lat.rate']:,.0f} req/s ({per} readings each)",
                "GET /health at the same rate",
                25,
            )
        )
    return rows


def latency_row(v: dict[str, float], key: str, figure: str, floor: str, target_ms: float) -> Row:
    """``<key>.p50`` / ``<key>.p99`` beside ``<key>.floor.p50`` / ``.p99``; p99 against target."""
    return Row(
        figure,
        f"{ms(v[f'{key}.p50'])} / {ms(v[f'{key}.p99'])} ms",
        f"{floor}: {ms(v[f'{key}.floor.p50'])} / {ms(v[f'{key}.floor.p99'])} ms",
        "-",
        f"p99 ≤ {target_ms:.0f} ms",
        "yes" if v[f"{key}.p99"] <= target_ms else "NO",
    )


def mqtt_and_fresh_rows(v: dict[str, float]) -> list[Row]:
    rows: list[Row] = []
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
            latency_row(
                v,
                "fresh",
                f"ingest→queryable p50 / p99 at half load ({num(v['fresh.load'])} readings/s)",
                "InfluxDB write→read",
                500,
            )
        )
    return rows


def history_rows(v: dict[str, float]) -> list[Row]:
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


def memory_rows(watch: MemoryWatch, backlog: list[tuple[int, dict[str, float]]]) -> list[Row]:
    peak = watch.peak()
    depth = max((b[0] for b in backlog), default=0)
    rows: list[Row] = []
    for service in sorted(peak):
        growth = [b[1].get(service, 0.0) for b in backlog if b[0] > 0]
        grew = max(growth, default=0.0)
        flat = "flat" if grew < 10 else f"grew {grew:+.0f} MB"
        procs = watch.processes.get(service, 1)
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


def cpu_note(m: Measurements, name: str, label: str) -> str:
    """Cores each process used during a kind of run (median over runs): what bounds it."""
    runs = m.cores[name]
    keys = sorted({k for r in runs for k in r}, key=lambda k: -median([r.get(k, 0) for r in runs]))
    parts = [f"{k} {median([r.get(k, 0.0) for r in runs]):.2f}" for k in keys]
    return f"Cores used during {label}: " + ", ".join(p for p in parts if not p.endswith(" 0.00"))


def census_note(cpu: dict[str, float]) -> str:
    parts = sorted(
        ((k, u) for k, u in cpu.items() if k not in ("pipeline", "bench")), key=lambda x: -x[1]
    )
    return (
        "CPU µs per stored reading during HTTP throughput runs (census, median): "
        + ", ".join(f"{k} {u:.1f}" for k, u in parts if u >= 0.05)
        + f"; pipeline {cpu['pipeline']:.1f}; load generator {cpu.get('bench', 0.0):.1f}."
    )


def notes(m: Measurements, v: dict[str, float], cpu: dict[str, float]) -> list[str]:
    other = median(m.other_cores) if m.other_cores else 0.0
    out = [
        f"HTTP door (202s) during the throughput runs: {num(v.get('http.door', 0))} readings/s;"
        f" ceiling runs {v.get('http.ceiling.s', 0):.1f} s each; fixed-rate runs achieved"
        f" {v.get('lat.rps', 0):,.0f} req/s.",
    ]
    if "pipeline" in cpu:
        out.append(census_note(cpu))
    out += [cpu_note(m, name, label) for name, label in CPU_NOTES if m.cores.get(name)]
    out += [
        f"Quiet machine: other processes used {other:.2f} cores (median over runs; at most"
        f" {max(m.other_cores, default=0):.2f}); 1-min load average before runs"
        f" {min(m.loads, default=0):.1f} to {max(m.loads, default=0):.1f};"
        f" {m.waited_s:.0f} s spent waiting for other jobs; {m.unquiet_runs} run(s) not"
        f" quiet; {len(m.discarded)} discarded"
        + (f" ({'; '.join(m.discarded)})" if m.discarded else "")
        + ".",
        "Instances: " + ", ".join(f"{i.name}" for i in instances()),
    ]
    return out


def table(
    a: argparse.Namespace,
    m: Measurements,
    watch: MemoryWatch,
    extra: list[Row],
    extra_notes: list[str],
) -> str:
    """The whole table: built-in door rows, then the registered figures' rows (``extra``),
    history, memory; the notes below it."""
    v = m.medians()
    cpu = us_per_reading(m, "http.stored", "http.stored")
    rows = [
        *http_rows(a, v, cpu),
        *mqtt_and_fresh_rows(v),
        *extra,
        *history_rows(v),
        *memory_rows(watch, m.backlog),
    ]
    title = (
        f"Millrace benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — medians of {m.runs()} runs"
        f" — {machine()}"
    )
    return render(rows, title, [*notes(m, v, cpu), *extra_notes])
