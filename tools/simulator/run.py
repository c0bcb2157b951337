"""The simulation loop: N machines, R readings per second each, over MQTT and/or HTTP.

Each *tick* every machine takes one reading. Readings leave in messages of
``readings_per_message`` readings (one MQTT message per machine, or one HTTP batch for all the
machines of the gateway). Faults, when asked for, replace a message by a bad one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from tools.simulator.http import HttpPublisher
from tools.simulator.mqtt import MqttPublisher
from tools.simulator.payloads import (
    TOPIC,
    fault,
    http_batch,
    mqtt_payload,
    reading,
    telemetry_topic,
)
from tools.simulator.values import MachineModel

log = logging.getLogger(__name__)

Transport = Literal["mqtt", "http", "both"]
HTTP_MAX_ITEMS = 1000  # machines per HTTP batch (the gateway's default limit)
BAD_KINDS = ("invalid_utf8", "invalid_json", "schema", "bad_topic")


@dataclass(frozen=True, slots=True)
class SimMachine:
    machine_id: str
    factory_id: str = "plant-1"
    sensor_type: str | None = None


@dataclass(slots=True)
class Config:
    machines: list[SimMachine]
    rate: float = 1.0  # readings per second per machine; 0 = as fast as the transport goes
    ticks: int | None = None  # readings per machine; None = until duration_s (or stopped)
    duration_s: float | None = None
    transport: Transport = "mqtt"
    readings_per_message: int = 1
    bad_rate: float = 0.0  # share of messages replaced by malformed ones
    unknown_rate: float = 0.0  # share of messages sent for machines that do not exist
    gateway_id: str = "SIM-GW-01"
    seed: int | None = None
    # First reading timestamp (µs since the epoch); readings are then 1/rate apart (1 ms when
    # unthrottled). None: timestamps are the wall clock, strictly increasing per machine.
    start_us: int | None = None
    # MQTT topic of a machine's telemetry (tests put a private prefix in front).
    topic_template: str = TOPIC


@dataclass(slots=True)
class Stats:
    readings: int = 0  # good readings sent (MQTT) or accepted (HTTP)
    messages: int = 0  # MQTT messages and HTTP requests sent, faults included
    faults: Counter[str] = field(default_factory=Counter)
    mqtt_acked: int = 0
    http_statuses: Counter[int] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "readings": self.readings,
            "messages": self.messages,
            "faults": dict(self.faults),
            "mqtt_acked": self.mqtt_acked,
            "http_statuses": {str(k): v for k, v in self.http_statuses.items()},
            "elapsed_s": round(self.elapsed_s, 3),
            "readings_per_s": round(self.readings_per_s, 1),
        }


class Simulator:
    def __init__(
        self,
        config: Config,
        *,
        mqtt: MqttPublisher | None = None,
        http: HttpPublisher | None = None,
    ) -> None:
        if config.transport in ("mqtt", "both") and mqtt is None:
            raise ValueError("an MqttPublisher is needed for transport mqtt/both")
        if config.transport in ("http", "both") and http is None:
            raise ValueError("an HttpPublisher is needed for transport http/both")
        if config.ticks is None and config.duration_s is None:
            raise ValueError("give ticks or duration_s")
        self.config = config
        self.mqtt = mqtt
        self.http = http
        self.rng = random.Random(config.seed)
        self.models = [MachineModel.pick(self.rng) for _ in config.machines]
        self._last_us = [0] * len(config.machines)
        self.stats = Stats()

    def _over(self, index: int) -> Transport:
        if self.config.transport == "both":
            return "mqtt" if index % 2 == 0 else "http"
        return self.config.transport

    def _timestamp(self, index: int, tick: int) -> int:
        c = self.config
        if c.start_us is not None:
            step = int(1_000_000 / c.rate) if c.rate > 0 else 1000
            return c.start_us + tick * step
        ts = max(time.time_ns() // 1000, self._last_us[index] + 1)
        self._last_us[index] = ts
        return ts

    def run(self, stop: threading.Event | None = None) -> Stats:
        c = self.config
        stop = stop or threading.Event()
        started = time.monotonic()
        end = started + c.duration_s if c.duration_s is not None else None
        mqtt_buffers: list[list[dict[str, Any]]] = [[] for _ in c.machines]
        http_buffer: dict[int, list[dict[str, Any]]] = {}
        tick = 0
        last_report = started
        while not stop.is_set():
            if c.ticks is not None and tick >= c.ticks:
                break
            now = time.monotonic()
            if end is not None and now >= end:
                break
            if c.rate > 0:
                due = started + tick / c.rate
                if due > now:
                    time.sleep(due - now)  # pacing the simulated gateways
            for i, machine in enumerate(c.machines):
                r = reading(
                    self._timestamp(i, tick), self.models[i].sample(self.rng), machine.sensor_type
                )
                if self._over(i) == "mqtt":
                    mqtt_buffers[i].append(r)
                    if len(mqtt_buffers[i]) >= c.readings_per_message:
                        self._send_mqtt(i, mqtt_buffers[i])
                        mqtt_buffers[i] = []
                else:
                    http_buffer.setdefault(i, []).append(r)
            tick += 1
            if http_buffer and tick % c.readings_per_message == 0:
                self._send_http(http_buffer)
                http_buffer = {}
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                log.info("%d readings, %d messages sent", self.stats.readings, self.stats.messages)
        for i, buffered in enumerate(mqtt_buffers):
            if buffered:
                self._send_mqtt(i, buffered)
        if http_buffer:
            self._send_http(http_buffer)
        if self.mqtt is not None:
            if not self.mqtt.flush(120):
                log.warning("%d MQTT messages still unacknowledged", self.mqtt.outstanding)
            self.stats.mqtt_acked = self.mqtt.acked
        if self.http is not None:
            self.stats.http_statuses = Counter(self.http.statuses)
        self.stats.elapsed_s = time.monotonic() - started
        return self.stats

    def _fault_kind(self) -> str | None:
        c = self.config
        if not c.bad_rate and not c.unknown_rate:
            return None
        draw = self.rng.random()
        if draw < c.bad_rate:
            return self.rng.choice(BAD_KINDS)
        if draw < c.bad_rate + c.unknown_rate:
            return "unknown_machine"
        return None

    def _send_mqtt(self, index: int, readings: list[dict[str, Any]]) -> None:
        assert self.mqtt is not None
        machine = self.config.machines[index]
        self.stats.messages += 1
        kind = self._fault_kind()
        if kind is not None:
            ts_us = self._timestamp(index, 0)
            topic, payload = fault(
                kind,
                machine.factory_id,
                machine.machine_id,
                ts_us,
                self.rng,
                self.config.topic_template,
            )
            self.mqtt.publish(topic, payload, key=("fault", kind))
            self.stats.faults[kind] += 1
            return
        topic = telemetry_topic(machine.factory_id, machine.machine_id, self.config.topic_template)
        key = (machine.machine_id, readings[0]["timestamp"])
        self.mqtt.publish(topic, mqtt_payload(readings), key=key)
        self.stats.readings += len(readings)

    def _send_http(self, buffered: dict[int, list[dict[str, Any]]]) -> None:
        assert self.http is not None
        by_factory: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
        for i, readings in buffered.items():
            m = self.config.machines[i]
            kind = self._fault_kind()
            if kind == "unknown_machine":
                by_factory.setdefault(m.factory_id, []).append((str(uuid.uuid4()), readings))
                self.stats.faults[kind] += 1
                continue
            if kind is not None:
                bad = [{**readings[0], "timestamp": "2025-13-45T99:00:00Z"}]
                by_factory.setdefault(m.factory_id, []).append((m.machine_id, bad))
                self.stats.faults["schema"] += 1
                continue
            by_factory.setdefault(m.factory_id, []).append((m.machine_id, readings))
        for factory_id, items in by_factory.items():
            for start in range(0, len(items), HTTP_MAX_ITEMS):
                chunk = items[start : start + HTTP_MAX_ITEMS]
                resp = self.http.post(http_batch(self.config.gateway_id, factory_id, chunk))
                self.stats.messages += 1
                if resp.status_code in (202, 207):
                    self.stats.readings += int(resp.json()["accepted"]["readings"])
