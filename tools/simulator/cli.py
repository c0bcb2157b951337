"""``python -m tools.simulator``: simulated gateways sending telemetry.

Examples::

    # 10 machines registered in PostgreSQL, 1 reading/s each, for a minute, over MQTT
    python -m tools.simulator --machines 10 --rate 1 --duration 60

    # as fast as possible, 20,000 single-reading QoS 1 messages, counted as they reach RabbitMQ
    python -m tools.simulator --machines 20 --rate 0 --ticks 1000 --measure amqp

    # half the machines over HTTP as a registered gateway, 1% bad payloads
    MILLRACE_CLIENT_ID=... MILLRACE_CLIENT_SECRET=... \\
        python -m tools.simulator --machines 4 --duration 30 --transport both --bad-rate 0.01

    # over MQTT as a registered gateway (its machines must be registered in its factory)
    python -m tools.simulator --factory default --machine-id M1 --duration 30 \\
        --username GW-CLIENT-ID --password GW-SECRET

Connection settings come from the same environment variables as the services (MQTT_HOST,
MQTT_PORT, MQTT_USERNAME, MQTT_PASSWORD, POSTGRES_URL, AMQP_URL, INFLUX_URL, INGEST_GATEWAY_PORT).
Without ``--username`` the MQTT side signs in to the edge as a Millrace service does
(MQTT_USERNAME/MQTT_PASSWORD, else the broker user of AMQP_URL), which may publish anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor

import orjson

from shared.edge import service_credentials
from shared.settings import AmqpSettings, InfluxSettings, MqttSettings, PostgresSettings
from tools.common import logs
from tools.simulator.http import AuthRequired, ClientCredentials, HttpPublisher
from tools.simulator.measure import AmqpTap, count_in_influx
from tools.simulator.mqtt import MqttPublisher
from tools.simulator.payloads import TOPIC
from tools.simulator.registry import ensure_machines
from tools.simulator.run import Config, SimMachine, Simulator, Stats

log = logging.getLogger("tools.simulator")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tools.simulator",
        description="Simulated factory gateways publishing telemetry over MQTT and/or HTTP.",
    )
    p.add_argument("--factory", default="plant-1", help="factory id (default: plant-1)")
    who = p.add_mutually_exclusive_group()
    who.add_argument(
        "--machines",
        type=int,
        default=5,
        help="machines to simulate, found or created in the"
        " registry (PostgreSQL) under location 'Simulator <factory>' (default: 5)",
    )
    who.add_argument(
        "--machine-id", action="append", help="simulate this existing machine (repeatable)"
    )
    p.add_argument("--rate", type=float, default=1.0, help="readings/s per machine; 0 = max")
    p.add_argument("--duration", type=float, help="seconds to run")
    p.add_argument("--ticks", type=int, help="readings per machine, then stop")
    p.add_argument("--transport", choices=("mqtt", "http", "both"), default="mqtt")
    p.add_argument("--readings-per-message", type=int, default=1)
    p.add_argument("--bad-rate", type=float, default=0.0, help="share of malformed messages")
    p.add_argument("--unknown-rate", type=float, default=0.0, help="share for unknown machines")
    p.add_argument("--max-inflight", type=int, default=1000, help="MQTT messages awaiting PUBACK")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="gateway processes sharing the machines (one Python process tops out at a few"
        " thousand MQTT messages/s)",
    )
    p.add_argument(
        "--username",
        help="MQTT username: a gateway's client id (then --password is its secret; the MQTT"
        " client id becomes <username>-<random>). Default: the service credentials",
    )
    p.add_argument(
        "--password", help="MQTT password for --username (default: $MILLRACE_MQTT_PASSWORD)"
    )
    p.add_argument("--gateway-id", default="SIM-GW-01")
    p.add_argument(
        "--topic-template",
        default=TOPIC,
        help=f"MQTT telemetry topic (default: {TOPIC})",
    )
    p.add_argument(
        "--ingest-url",
        default=f"http://127.0.0.1:{os.environ.get('INGEST_GATEWAY_PORT', '8001')}",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("MILLRACE_TOKEN"),
        help="bearer token for HTTP ingest (default: $MILLRACE_TOKEN)",
    )
    p.add_argument(
        "--client-id",
        default=os.environ.get("MILLRACE_CLIENT_ID"),
        help="gateway client id, exchanged with the secret for tokens (default:"
        " $MILLRACE_CLIENT_ID; see `python -m services.auth create-gateway`)",
    )
    p.add_argument(
        "--client-secret",
        default=os.environ.get("MILLRACE_CLIENT_SECRET"),
        help="gateway client secret (default: $MILLRACE_CLIENT_SECRET)",
    )
    p.add_argument("--auth-url", default=f"http://127.0.0.1:{os.environ.get('AUTH_PORT', '8003')}")
    p.add_argument(
        "--measure",
        choices=("none", "amqp", "influx"),
        default="none",
        help="wait until the readings reach RabbitMQ (a private queue on the telemetry exchange)"
        " or InfluxDB, and report the end-to-end rate",
    )
    p.add_argument("--measure-timeout", type=float, default=300.0)
    p.add_argument("--seed", type=int)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.duration is None and args.ticks is None:
        p.error("give --duration or --ticks")
    if args.username is None and args.password is not None:
        p.error("--password needs --username")
    if args.username is not None:
        args.password = args.password or os.environ.get("MILLRACE_MQTT_PASSWORD")
        if not args.password:
            p.error("--username needs --password (or $MILLRACE_MQTT_PASSWORD)")
    return args


def mqtt_sign_in(args: argparse.Namespace) -> tuple[str | None, str | None, str]:
    """(username, password, MQTT client id) for the edge: the gateway given on the command line,
    else the service credentials."""
    suffix = uuid.uuid4().hex[:8]
    if args.username is not None:
        return args.username, args.password, f"{args.username}-{suffix}"
    credentials = service_credentials(MqttSettings(), AmqpSettings())
    username, password = credentials if credentials else (None, None)
    return username, password, f"sim-{suffix}"


async def _machines(args: argparse.Namespace) -> list[SimMachine]:
    if args.machine_id:
        return [SimMachine(m, args.factory) for m in args.machine_id]
    registered = await ensure_machines(PostgresSettings(), args.factory, args.machines)
    # Each machine publishes under the factory it is registered in (the edge checks it).
    return [SimMachine(m.id, m.factory_id) for m in registered]


def _simulate(args: argparse.Namespace, machines: list[SimMachine]) -> Stats:
    config = Config(
        machines=machines,
        rate=args.rate,
        ticks=args.ticks,
        duration_s=args.duration,
        transport=args.transport,
        readings_per_message=args.readings_per_message,
        bad_rate=args.bad_rate,
        unknown_rate=args.unknown_rate,
        gateway_id=args.gateway_id,
        seed=args.seed,
        topic_template=args.topic_template,
    )
    mqtt = http = None
    if args.transport in ("mqtt", "both"):
        s = MqttSettings()
        username, password, client_id = mqtt_sign_in(args)
        mqtt = MqttPublisher(
            s.host,
            s.port,
            client_id=client_id,
            username=username,
            password=password,
            max_outstanding=args.max_inflight,
        ).connect()
    if args.transport in ("http", "both"):
        credentials = None
        if args.client_id and args.client_secret:
            credentials = ClientCredentials(args.auth_url, args.client_id, args.client_secret)
        http = HttpPublisher(args.ingest_url, token=args.token, credentials=credentials)
    stop = threading.Event()
    try:
        return Simulator(config, mqtt=mqtt, http=http).run(stop)
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        if mqtt is not None:
            mqtt.close()
        if http is not None:
            http.close()


async def _simulate_all(args: argparse.Namespace, machines: list[SimMachine]) -> Stats:
    processes = max(1, min(args.processes, len(machines)))
    if processes == 1:
        return await asyncio.to_thread(_simulate, args, machines)
    loop = asyncio.get_running_loop()
    slices = [machines[i::processes] for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        parts = await asyncio.gather(
            *(loop.run_in_executor(pool, _simulate, args, part) for part in slices)
        )
    total = Stats()
    for part in parts:
        total.readings += part.readings
        total.messages += part.messages
        total.faults.update(part.faults)
        total.mqtt_acked += part.mqtt_acked
        total.http_statuses.update(part.http_statuses)
        total.elapsed_s = max(total.elapsed_s, part.elapsed_s)
    return total


async def _run(args: argparse.Namespace) -> dict[str, object]:
    machines = await _machines(args)
    log.info(
        "simulating %d machine(s) of factory %s over %s",
        len(machines),
        args.factory,
        args.transport,
    )
    tap = None
    since_ns = time.time_ns() - 1_000_000_000
    if args.measure == "amqp":
        amqp = AmqpSettings()
        tap = await AmqpTap(
            amqp, exchange=amqp.exchange, binding=f"reading.{args.factory}.#"
        ).start()
    try:
        started = time.monotonic()
        stats = await _simulate_all(args, machines)
        report: dict[str, object] = {"sent": stats.as_dict()}
        if tap is not None:
            ok = await tap.wait_for(lambda a: a.distinct() >= stats.readings, args.measure_timeout)
            a = tap.arrivals
            elapsed = (a.last_at or time.monotonic()) - started
            report["amqp"] = {
                "complete": ok,
                "readings": len(a.readings),
                "distinct": a.distinct(),
                "seconds": round(elapsed, 3),
                "readings_per_s": round(a.distinct() / elapsed, 1) if elapsed > 0 else 0,
            }
        if args.measure == "influx":
            report["influx"] = await _wait_influx(args, stats.readings, since_ns, started)
        return report
    finally:
        if tap is not None:
            await tap.close()


async def _wait_influx(
    args: argparse.Namespace, expected: int, since_ns: int, started: float
) -> dict[str, object]:
    influx = InfluxSettings()
    deadline = time.monotonic() + args.measure_timeout
    stored = 0
    while time.monotonic() < deadline:
        stored = await count_in_influx(influx, args.factory, since_ns)
        if stored >= expected:
            break
        await asyncio.sleep(0.2)  # polling InfluxDB: it has no change notification
    elapsed = time.monotonic() - started
    return {
        "complete": stored >= expected,
        "stored": stored,
        "seconds": round(elapsed, 3),
        "readings_per_s": round(stored / elapsed, 1) if elapsed > 0 else 0,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logs.configure(args.verbose)
    try:
        report = asyncio.run(_run(args))
    except (AuthRequired, ConnectionError) as e:
        log.error("%s", e)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
