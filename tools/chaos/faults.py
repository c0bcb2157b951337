"""The faults, one per phase: break something, keep it broken for a while, repair it.

Every fault repairs in a ``finally``, so an interrupted run never leaves its fault in place;
:meth:`tools.chaos.pipeline.Pipeline.restore` is the second line of defence.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from tools.chaos.pipeline import Pipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Fault:
    key: str
    down_s: float

    @property
    def label(self) -> str:
        what = FAULTS[self.key]
        return what.format(s=f"{self.down_s:g}")

    def run(self, pipeline: Pipeline, stop: threading.Event) -> None:
        """Inject, hold ``down_s`` (cut short by ``stop``), repair."""
        log.info("fault: %s", self.label)
        if self.key in SPECIAL:
            SPECIAL[self.key](self, pipeline, stop)
            return
        if self.key.endswith("-kill"):  # a service killed, started again by services.sh up
            pipeline.sigkill(KILLED[self.key])
            repair: Callable[[], None] = pipeline.start_services
        else:  # a dependency stopped (or restarted: stopped for down_s), then started
            dependency = self.key.removesuffix("-stop").removesuffix("-restart")
            pipeline.stop_dependency(dependency)
            repair = partial(pipeline.start_dependency, dependency)
        try:
            stop.wait(self.down_s)
        finally:
            repair()


def broker_crash(fault: Fault, pipeline: Pipeline, stop: threading.Event) -> None:
    """The bridges stopped, so PUBACKed readings pile up in the edge queue; then the broker is
    SIGKILLed with that backlog, and started again with the bridges."""
    pipeline.stop_service("mqtt_bridge")
    try:
        stop.wait(fault.down_s)  # the backlog builds
        pipeline.sigkill_rabbitmq()
    finally:
        pipeline.start_dependency("rabbitmq")
        pipeline.start_services()


def edge_overflow(fault: Fault, pipeline: Pipeline, stop: threading.Event) -> None:
    """The bridges stopped and the edge queue limited to a few hundred kB: it fills, gateways
    get no PUBACK and hold their readings; then the limit is lifted and the bridges return."""
    pipeline.stop_service("mqtt_bridge")
    try:
        pipeline.shrink_edge(EDGE_FULL_BYTES)
        stop.wait(fault.down_s)
    finally:
        pipeline.restore_edge()
        pipeline.start_services()


EDGE_FULL_BYTES = 200_000
SPECIAL: dict[str, Callable[[Fault, Pipeline, threading.Event], None]] = {
    "broker-crash": broker_crash,
    "edge-overflow": edge_overflow,
}

# The service a "-kill" fault sends SIGKILL to.
KILLED = {"writer-kill": "writer", "bridge-kill": "mqtt_bridge"}

# key → label ({s}: seconds down)
FAULTS = {
    "writer-kill": "SIGKILL writer(s), restart after {s} s",
    "influxdb-stop": "InfluxDB stopped for {s} s",
    "rabbitmq-restart": "RabbitMQ restarted ({s} s down)",
    "bridge-kill": "SIGKILL mqtt_bridge, restart after {s} s",
    "redis-stop": "Redis stopped for {s} s",
    "postgres-stop": "PostgreSQL stopped for {s} s",
    "broker-crash": "bridges stopped {s} s, then RabbitMQ SIGKILLed with the edge backlog",
    "edge-overflow": "bridges stopped and the edge queue full for {s} s",
}

# The full run, and the short version for `make test`.
FULL = {
    "writer-kill": 5.0,
    "influxdb-stop": 30.0,
    "rabbitmq-restart": 0.0,
    "bridge-kill": 5.0,
    "redis-stop": 20.0,
    "postgres-stop": 20.0,
    "broker-crash": 20.0,
    "edge-overflow": 30.0,
}
SHORT = {
    "writer-kill": 2.0,
    "influxdb-stop": 5.0,
    "rabbitmq-restart": 0.0,
    "bridge-kill": 2.0,
    "broker-crash": 4.0,
    "edge-overflow": 6.0,
}
