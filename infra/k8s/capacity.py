# ruff: noqa: E501, T201  (a script: it prints tables and writes SVG markup)
"""The capacity model of docs/capacity.md: cores and nodes for a target rate of readings, from the
CPU each component spent per reading in the benchmark's census (README "Performance").

    python infra/k8s/capacity.py            # prints the tables, writes docs/capacity.svg

Measured inputs only: the census of the `make bench` run the README shows (cores used by each
process during the HTTP throughput runs at the measured rate). Everything else is arithmetic
with the assumptions named below; tests/unit/test_capacity.py keeps the document, the plot and
this script in step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SVG = ROOT / "docs" / "capacity.svg"

# README "Performance", `make bench`, HTTP throughput runs (100 readings per request, 50
# machines): readings/s at the door and stored, and cores per process during those runs.
HTTP_DOOR_RATE = 39_299
HTTP_STORED_RATE = 38_878
HTTP_CORES = {
    "ingest_gateway": (0.55, HTTP_DOOR_RATE),
    "writer": (0.30 + 0.29, HTTP_STORED_RATE),  # writer-1 + writer
    "InfluxDB": (0.26, HTTP_STORED_RATE),
    "RabbitMQ": (0.25, HTTP_STORED_RATE),
    "Redis": (0.02, HTTP_DOOR_RATE),
    # Not in the README's census (the live stream came later): query_api consumes every reading
    # for GET /api/v1/live. Measured in this repository's 1-writer check (docs/capacity.md,
    # "Checked here"): 0.37 cores while 40,587 readings/s were stored.
    "query_api (live)": (0.37, 40_587),
}
# Same run, MQTT QoS 1 single-reading messages: 4,267 readings/s stored.
MQTT_RATE = 4_267
MQTT_CORES = {
    "mqtt_bridge": 0.50,
    "Mosquitto": 0.08,
    "writer": 0.08 + 0.07,
    "RabbitMQ": 0.08,
    "InfluxDB": 0.04,
    "Redis": 0.01,
}

# Assumptions (not measured): pods are sized for this share of their CPU request at the target
# rate (headroom for bursts and a lost node); nodes have this many allocatable cores.
TARGET_UTILISATION = 0.6
NODE_CORES = 8
# InfluxDB OSS is one process: README "Performance" measured its one-client write ceiling at
# 200,000-250,000 points/s on this machine; plan at the lower figure, per instance.
INFLUX_POINTS_PER_INSTANCE = 200_000
# Fixed floor of a production cluster (overlays/production): 3 RabbitMQ nodes x 1 core requested,
# 3 PostgreSQL instances x 0.5, Redis 0.1, Mosquitto 0.25, auth 2 x 0.25, query_api 2 x 0.25,
# alerter 2 x 0.25, mqtt_bridge 0.5.
FIXED_CORES = 3 * 1.0 + 3 * 0.5 + 0.1 + 0.25 + 2 * 0.25 + 2 * 0.25 + 2 * 0.25 + 0.5
RATES = (10_000, 100_000, 1_000_000)


@dataclass(frozen=True)
class Cost:
    component: str
    us_per_reading: float


def http_costs() -> list[Cost]:
    return [Cost(name, cores / rate * 1e6) for name, (cores, rate) in HTTP_CORES.items()]


def mqtt_costs() -> list[Cost]:
    return [Cost(name, cores / MQTT_RATE * 1e6) for name, cores in MQTT_CORES.items()]


def cores_at(rate: float, costs: list[Cost]) -> dict[str, float]:
    """CPU cores each component needs at `rate` readings/s, at the target utilisation."""
    return {c.component: rate * c.us_per_reading / 1e6 / TARGET_UTILISATION for c in costs}


@dataclass(frozen=True)
class Plan:
    rate: int
    cores: dict[str, float]
    influx_instances: int

    @property
    def total(self) -> float:
        return sum(self.cores.values()) + FIXED_CORES

    @property
    def nodes(self) -> int:
        # At least three nodes: the RabbitMQ and PostgreSQL members on separate nodes.
        return max(3, math.ceil(self.total / NODE_CORES))


def plan(rate: int) -> Plan:
    return Plan(rate, cores_at(rate, http_costs()), math.ceil(rate / INFLUX_POINTS_PER_INSTANCE))


def cost_table() -> str:
    rows = [
        "| component | HTTP (100/batch) µs/reading | MQTT (1/message) µs/reading |",
        "|---|---:|---:|",
    ]
    mqtt = {c.component: c.us_per_reading for c in mqtt_costs()}
    http = {c.component: c.us_per_reading for c in http_costs()}
    for name in [*http, *(n for n in mqtt if n not in http)]:
        h = f"{http[name]:.1f}" if name in http else "-"
        m = f"{mqtt[name]:.1f}" if name in mqtt else "-"
        rows.append(f"| {name} | {h} | {m} |")
    rows.append(f"| **total** | **{sum(http.values()):.1f}** | **{sum(mqtt.values()):.1f}** |")
    return "\n".join(rows)  # fmt: skip


def plan_table() -> str:
    plans = [plan(r) for r in RATES]
    header = "| readings/s (HTTP, 100/batch) | " + " | ".join(f"{p.rate:,}" for p in plans) + " |"
    rows = [header, "|---|" + "---:|" * len(plans)]
    for name in HTTP_CORES:
        rows.append(f"| {name} cores | " + " | ".join(f"{p.cores[name]:.1f}" for p in plans) + " |")
    rows.append("| fixed floor cores | " + " | ".join(f"{FIXED_CORES:.1f}" for _ in plans) + " |")
    rows.append("| **total cores** | " + " | ".join(f"**{p.total:.1f}**" for p in plans) + " |")
    rows.append(
        f"| **{NODE_CORES}-core nodes** | " + " | ".join(f"**{p.nodes}**" for p in plans) + " |"
    )
    rows.append(
        "| InfluxDB instances (write ceiling) | "
        + " | ".join(f"{p.influx_instances}" for p in plans)
        + " |"
    )
    return "\n".join(rows)  # fmt: skip


def svg() -> str:
    """Total cores against readings/s on log-log axes, one line per component stacked."""
    width, height, left, bottom, top, right = 640, 400, 70, 50, 30, 150
    rates = [10 ** (3 + i / 10) for i in range(0, 31)]  # 1,000 .. 1,000,000
    lo_r, hi_r = math.log10(rates[0]), math.log10(rates[-1])
    lo_c, hi_c = -1.0, 2.5  # 0.1 .. ~316 cores

    def x(rate: float) -> float:
        return left + (math.log10(rate) - lo_r) / (hi_r - lo_r) * (width - left - right)

    def y(cores: float) -> float:
        c = min(max(math.log10(max(cores, 10**lo_c)), lo_c), hi_c)
        return height - bottom - (c - lo_c) / (hi_c - lo_c) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13">Millrace: cores needed (HTTP ingest, at '
        f"{TARGET_UTILISATION:.0%} utilisation)</text>",
    ]
    for exp in range(3, 7):
        xx = x(10**exp)
        parts.append(
            f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{height - bottom}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{xx:.1f}" y="{height - bottom + 15}" text-anchor="middle">{10**exp:,}</text>'
        )
    for exp in (-1, 0, 1, 2):
        yy = y(10**exp)
        parts.append(
            f'<line x1="{left}" y1="{yy:.1f}" x2="{width - right}" y2="{yy:.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{10**exp:g}</text>')
    parts.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">readings per second</text>'
    )
    parts.append(
        f'<text x="16" y="{(top + height - bottom) / 2}" transform="rotate(-90 16 {(top + height - bottom) / 2})" text-anchor="middle">cores</text>'
    )
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#000000"]
    series = [*HTTP_CORES, "total"]
    for i, name in enumerate(series):
        points = []
        for r in rates:
            p = plan(round(r))
            value = p.total if name == "total" else p.cores[name]
            points.append(f"{x(r):.1f},{y(value):.1f}")
        stroke = 2.5 if name == "total" else 1.5
        parts.append(
            f'<polyline fill="none" stroke="{colours[i]}" stroke-width="{stroke}" points="{" ".join(points)}"/>'
        )
        ly = top + 14 + i * 16
        parts.append(
            f'<line x1="{width - right + 10}" y1="{ly - 4}" x2="{width - right + 30}" y2="{ly - 4}" stroke="{colours[i]}" stroke-width="{stroke}"/>'
        )
        parts.append(f'<text x="{width - right + 35}" y="{ly}">{name}</text>')
    for r in RATES:
        p = plan(r)
        parts.append(f'<circle cx="{x(r):.1f}" cy="{y(p.total):.1f}" r="3.5" fill="black"/>')
        parts.append(
            f'<text x="{x(r) - 4:.1f}" y="{y(p.total) - 8:.1f}" text-anchor="end">{p.total:.0f}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"  # fmt: skip


def main() -> None:
    SVG.write_text(svg())
    print(cost_table())
    print()
    print(plan_table())


if __name__ == "__main__":
    main()
