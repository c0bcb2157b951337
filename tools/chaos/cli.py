"""``python -m tools.chaos``: send a known set of readings while breaking the pipeline, then
prove from InfluxDB that nothing accepted was lost and nothing was stored twice.

    python -m tools.chaos                            # the issue's run: 1,000,000 readings
    python -m tools.chaos --readings 20000 --short   # the short version (make test)

Exit status: 0 when lost = 0 and duplicated = 0; 1 when not; 2 when the run itself failed
(a fault could not be repaired, a gateway crashed). See docs/chaos.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from types import FrameType

import orjson

from shared import ports
from shared.settings import AmqpSettings, InfluxSettings, PostgresSettings
from tools.chaos.credentials import GatewayToken, register_gateway
from tools.chaos.doors import Door, HttpGateway, MqttGateway
from tools.chaos.faults import FAULTS, FULL, SHORT, Fault
from tools.chaos.ledger import DoorLedger
from tools.chaos.pipeline import Pipeline, PipelineError
from tools.chaos.report import render, tally
from tools.chaos.schedule import Pacer, Schedule
from tools.chaos.verify import (
    RunPoints,
    Stored,
    expected_by_machine,
    match,
    wait_drained,
    wait_stored,
)
from tools.common import logs
from tools.simulator.registry import ensure_machines

log = logging.getLogger("tools.chaos")

# The run's machines belong to this factory (found or created as "SIM-chaos-plant-NNNN" and
# reused); a run's points are told apart by that factory and the run's time range.
REGISTRY_FACTORY = "chaos-plant"
# Other engineers' traffic may keep the writer queue busy: wait this long for it, no more.
QUEUE_DRAIN_S = 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tools.chaos",
        description="Zero-loss run: known readings over HTTP and MQTT while faults are injected.",
    )
    p.add_argument("--readings", type=int, default=1_000_000, help="readings to send in total")
    p.add_argument(
        "--short",
        action="store_true",
        help="the short version: writer SIGKILL, InfluxDB stopped 5 s, RabbitMQ restart,"
        " bridge SIGKILL; shorter phases",
    )
    p.add_argument(
        "--faults",
        help="comma-separated, in order, or 'none' (default: all, or the short set):"
        f" {', '.join(FAULTS)}",
    )
    p.add_argument(
        "--down",
        action="append",
        default=[],
        metavar="FAULT=SECONDS",
        help="how long a fault lasts, e.g. --down influxdb-stop=60 (repeatable)",
    )
    p.add_argument(
        "--phase-s",
        type=float,
        help="seconds of traffic per phase (default 60, short 15); the send rate follows",
    )
    p.add_argument("--machines", type=int, default=100, help="machines, split between the doors")
    p.add_argument("--http-share", type=float, default=0.5, help="share of readings over HTTP")
    p.add_argument(
        "--mqtt-readings-per-message", type=int, default=10, help="readings per MQTT message"
    )
    p.add_argument(
        "--bad-share",
        type=float,
        default=0.002,
        help="share of HTTP machine items made invalid on purpose (unknown machine or a value"
        " out of range): the door must reject them and they must not be stored",
    )
    p.add_argument("--drain-timeout", type=float, help="seconds to wait for InfluxDB (600/180)")
    p.add_argument(
        "--finish-timeout",
        type=float,
        default=300.0,
        help="seconds the gateways may keep retrying after the last phase",
    )
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    base = SHORT if args.short else FULL
    keys = args.faults.split(",") if args.faults else list(base)
    if keys == ["none"]:
        keys = []
    unknown = [k for k in keys if k not in FAULTS]
    if unknown:
        p.error(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")
    downs = {k: base.get(k, FULL[k]) for k in keys}
    for item in args.down:
        key, _, seconds = item.partition("=")
        if key not in FAULTS:
            p.error(f"--down {item}: unknown fault {key!r}")
        downs[key] = float(seconds)
    args.plan = [Fault(k, downs[k]) for k in keys]
    args.phase_s = args.phase_s or (15.0 if args.short else 60.0)
    args.drain_timeout = args.drain_timeout or (180.0 if args.short else 600.0)
    if args.readings < 1 or not 0 <= args.http_share <= 1:
        p.error("--readings must be positive and --http-share within 0..1")
    return args


def _url(service: str) -> str:
    return os.environ.get(f"{service.upper()}_URL") or ports.url(service)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same path as Ctrl-C, through every ``finally`` that repairs the pipeline.
    raise KeyboardInterrupt


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = uuid.uuid4().hex[:8]
        self.factory_id = REGISTRY_FACTORY
        self.pipeline = Pipeline()
        self.schedule = Schedule(len(args.plan) + 1, args.phase_s)
        self.stop = threading.Event()
        self.phase_names = ["0 baseline, no fault"] + [
            f"{i} {f.label}" for i, f in enumerate(args.plan, 1)
        ]
        self.failure: str | None = None

    def prepare(self) -> tuple[list[DoorLedger], list[Door]]:
        args = self.args
        waited = self.pipeline.wait_ready()
        log.info("pipeline ready (%.1f s); run %s", waited, self.factory_id)
        machines = asyncio.run(ensure_machines(PostgresSettings(), REGISTRY_FACTORY, args.machines))
        ids = [str(m.id) for m in machines]
        n_http = round(args.readings * args.http_share)
        cut = max(1, min(len(ids) - 1, round(len(ids) * args.http_share)))
        http_ledger = DoorLedger("http", ids[:cut])
        mqtt_ledger = DoorLedger("mqtt", ids[cut:])
        client_id, secret = register_gateway(f"CHAOS-{self.run_id}", self.factory_id)
        mqtt_credentials = register_gateway(f"CHAOS-{self.run_id}-mqtt", self.factory_id)
        token = GatewayToken(_url("auth"), client_id, secret)
        token.header()  # fail now, not in the middle of the run
        doors: list[Door] = []
        if n_http:
            doors.append(
                HttpGateway(
                    http_ledger,
                    Pacer(self.schedule, n_http),
                    self.stop,
                    seed=args.seed,
                    base_url=_url("ingest_gateway"),
                    token=token,
                    gateway_id=f"CHAOS-{self.run_id}",
                    factory_id=self.factory_id,
                    bad_share=args.bad_share,
                )
            )
        if args.readings - n_http:
            doors.append(
                MqttGateway(
                    mqtt_ledger,
                    Pacer(self.schedule, args.readings - n_http),
                    self.stop,
                    seed=args.seed + 1,
                    credentials=mqtt_credentials,
                    factory_id=self.factory_id,
                    readings_per_message=args.mqtt_readings_per_message,
                    flush_timeout_s=args.finish_timeout,
                )
            )
        rate = args.readings / (self.schedule.phases * args.phase_s)
        log.info(
            "%d readings (%d HTTP, %d MQTT) at %.0f readings/s, %d phases of %.0f s",
            args.readings,
            n_http,
            args.readings - n_http,
            rate,
            self.schedule.phases,
            args.phase_s,
        )
        return [http_ledger, mqtt_ledger], doors

    def inject(self, doors: list[Door]) -> None:
        """Run the phases; each fault is repaired and the pipeline ready before the next."""
        for phase in range(self.schedule.phases):
            self.schedule.begin(phase)
            phase_end = time.monotonic() + self.args.phase_s
            log.info("phase %s", self.phase_names[phase])
            if phase > 0:
                self.args.plan[phase - 1].run(self.pipeline, self.stop)
                log.info("pipeline ready again after %.1f s", self.pipeline.wait_ready())
            # Traffic goes on until the phase's share has been sent.
            while (left := phase_end - time.monotonic()) > 0:
                self._check(doors)
                time.sleep(min(left, 1.0))
        self.schedule.end()
        deadline = time.monotonic() + self.args.finish_timeout
        for door in doors:
            while not door.finished.wait(1.0):
                self._check(doors)
                if time.monotonic() > deadline:
                    log.error("%s gateway still retrying at the deadline; giving up", door.name)
                    self.stop.set()
            self._check(doors)

    def _check(self, doors: list[Door]) -> None:
        for door in doors:
            if door.error is not None:
                raise RuntimeError(f"{door.name} failed: {door.error!r}")

    async def count(self, ledgers: list[DoorLedger], since_ns: int) -> tuple[float, Stored]:
        points = RunPoints(InfluxSettings(), self.factory_id, since_ns)
        try:
            expected = expected_by_machine(ledgers)
            amqp = AmqpSettings()
            started = time.monotonic()
            await wait_stored(points, amqp, expected, self.args.drain_timeout)
            # Late re-deliveries could still add copies: count once the queue is empty.
            await wait_drained(amqp, QUEUE_DRAIN_S)
            return time.monotonic() - started, await match(points, ledgers)
        finally:
            await points.close()


def run(args: argparse.Namespace) -> int:
    chaos = Run(args)
    started = time.monotonic()
    since_ns = time.time_ns() - 1_000_000_000
    try:
        ledgers, doors = chaos.prepare()
    except (PipelineError, RuntimeError, OSError) as e:
        log.error("cannot start the run: %s", e)
        return 2
    for door in doors:
        door.start()
    try:
        chaos.inject(doors)
    except (PipelineError, RuntimeError) as e:
        chaos.failure = str(e)
        log.error("run aborted: %s", e)
    finally:
        chaos.stop.set()
        for door in doors:
            door.join(timeout=30)
        try:
            chaos.pipeline.restore()
            chaos.pipeline.wait_ready()
        except PipelineError as e:
            chaos.failure = chaos.failure or str(e)
            log.error("%s", e)
    sending_s = time.monotonic() - started
    seconds = [chaos.schedule.seconds(p) for p in range(len(chaos.schedule.started))]
    names = chaos.phase_names[: len(seconds)]
    drained_s, stored = asyncio.run(chaos.count(ledgers, since_ns))
    rows, per_door, total = tally(ledgers, stored, names, seconds)
    table = render(rows, per_door, total)
    print(table)
    summary = (
        f"run {chaos.factory_id}: {total.sent:,} readings in {sending_s:.0f} s of traffic and"
        f" faults, stored within {drained_s:.0f} s more ({time.monotonic() - started:.0f} s"
        f" in all); lost {total.lost}, duplicated {total.duplicated}"
    )
    print(summary)
    if args.json:
        args.json.write_text(
            orjson.dumps(
                {
                    "run": chaos.factory_id,
                    "command": " ".join(sys.argv),
                    "failure": chaos.failure,
                    "phases": [r.as_dict() for r in rows],
                    "doors": {k: r.as_dict() for k, r in per_door.items()},
                    "total": total.as_dict(),
                    "seconds": {"traffic": sending_s, "drain": drained_s},
                    "table": table,
                },
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
    if chaos.failure:
        print(f"RUN FAILED: {chaos.failure}")
        return 2
    return 1 if total.lost or total.duplicated else 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logs.configure(args.verbose)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sys.exit(run(args))
    except KeyboardInterrupt:
        sys.exit(130)
