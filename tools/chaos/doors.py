"""Two gateways, one per door, behaving as real ones do under faults.

- :class:`HttpGateway` posts batches of everything due, keeps the same batch until the door
  gives a definitive answer (503 and connection errors are retried, honouring ``Retry-After``;
  a 503 means nothing was accepted), renews its token, and buffers new readings meanwhile.
- :class:`MqttGateway` publishes QoS 1 with a persistent session; paho resends what was not
  acknowledged after a reconnect.

Both write to their :class:`~tools.chaos.ledger.DoorLedger`: what was sent, when, and what the
door answered. Payloads are built with the simulator's functions (:mod:`tools.simulator`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from shared.edge import mqtt_client
from shared.settings import MqttSettings
from tools.chaos.credentials import GatewayToken, TokenUnavailable
from tools.chaos.ledger import DoorLedger
from tools.chaos.schedule import Pacer, Schedule
from tools.simulator import MqttPublisher, mqtt_payload, reading, telemetry_topic
from tools.simulator.payloads import http_batch
from tools.simulator.values import MachineModel

log = logging.getLogger(__name__)

INGEST_PATH = "/api/v1/data/ingest"
OUT_OF_RANGE = 5000.0  # °C: above the plausible range, the machine's item is rejected


class Door(threading.Thread):
    """A gateway thread: sends its door's readings as they fall due, records the answers."""

    def __init__(
        self,
        name: str,
        ledger: DoorLedger,
        pacer: Pacer,
        stop: threading.Event,
        seed: int,
        factory_id: str,
        send_every_s: float,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.factory_id = factory_id
        self.send_every_s = send_every_s  # the gateway's send interval
        self.ledger = ledger
        self.pacer = pacer
        self.schedule: Schedule = pacer.schedule
        self.stop = stop
        self.rng = random.Random(seed)
        self.models = [MachineModel.pick(self.rng) for _ in ledger.machines]
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            self.send_all()
        except BaseException as e:  # reported by the harness (Run._check), never swallowed
            log.exception("%s gateway failed", self.ledger.door)
            self.error = e
        finally:
            self.finished.set()

    def send_all(self) -> None:
        raise NotImplementedError

    def values(self, machine: int) -> dict[str, float]:
        return self.models[machine].sample(self.rng)

    def new_readings(self, limit: int) -> list[int]:
        """Ledger entries for the readings due now (at most ``limit``); reading j: machine j % M."""
        ledger = self.ledger
        start = len(ledger)
        end = min(self.pacer.due(), start + limit)
        machines = len(ledger.machines)
        for j in range(start, end):
            ledger.add(self.pacer.timestamp_us(j), j % machines, self.pacer.phase_of(j))
        return list(range(start, end))


class HttpGateway(Door):
    def __init__(
        self,
        ledger: DoorLedger,
        pacer: Pacer,
        stop: threading.Event,
        *,
        seed: int,
        base_url: str,
        token: GatewayToken,
        gateway_id: str,
        factory_id: str,
        bad_share: float,
        send_every_s: float = 0.25,
        max_readings: int = 5000,
    ) -> None:
        super().__init__("chaos-http", ledger, pacer, stop, seed, factory_id, send_every_s)
        self.token = token
        self.gateway_id = gateway_id
        self.bad_share = bad_share
        self.max_readings = max_readings
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(30.0, connect=5.0))

    def send_all(self) -> None:
        try:
            while len(self.ledger) < self.pacer.total and not self.stop.is_set():
                sent_at = time.monotonic()
                batch = self.new_readings(self.max_readings)
                if batch:
                    self._deliver(batch)
                if len(batch) < self.max_readings:  # no backlog: wait for the next send slot
                    self.stop.wait(max(0.0, sent_at + self.send_every_s - time.monotonic()))
        finally:
            self._client.close()

    def _deliver(self, batch: list[int]) -> None:
        """Post one batch until the door answers definitively (or the run gives up)."""
        items, owners = self._items(batch)
        body = orjson.dumps(http_batch(self.gateway_id, self.factory_id, items))
        attempt = 0
        while not self.stop.is_set():
            attempt += 1
            answer, wait_s = self._post(body, items, owners)
            if answer:
                return
            self.stop.wait(wait_s)
        self.ledger.give_up(batch)

    def _post(
        self, body: bytes, items: list[tuple[str, list[dict[str, Any]]]], owners: list[list[int]]
    ) -> tuple[bool, float]:
        """One attempt. Returns (answered definitively, seconds to wait before the next)."""
        ledger = self.ledger
        phase = self.schedule.current
        try:
            headers = {"content-type": "application/json", **self.token.header()}
            resp = self._client.post(INGEST_PATH, content=body, headers=headers)
        except httpx.TransportError as e:
            ledger.answered(phase, "conn-error")
            log.debug("ingest unreachable: %s", e)
            return False, 1.0
        except TokenUnavailable as e:
            ledger.answered(phase, "no-token")
            log.warning("no gateway token (%s); retrying", e)
            return False, 2.0
        status = resp.status_code
        ledger.answered(phase, str(status))
        if status == 202:
            for ids in owners:
                ledger.accept(ids)
            return True, 0.0
        if status in (207, 400) and resp.headers.get("content-type", "").startswith(
            "application/json"
        ):
            self._partial(resp.json(), items, owners, status)
            return True, 0.0
        if status == 401:
            self.token.invalidate()
            return False, 0.5
        if status == 503:
            return False, float(resp.headers.get("retry-after", "1"))
        # 5xx, 429 and anything unexpected: nothing known to be accepted; back off and resend.
        log.warning("ingest answered %d: %s", status, resp.text[:200])
        return False, 2.0

    def _partial(
        self,
        doc: dict[str, Any],
        items: list[tuple[str, list[dict[str, Any]]]],
        owners: list[list[int]],
        status: int,
    ) -> None:
        """207/400: the listed machines' readings are rejected, the others accepted."""
        rejected: dict[int, str] = {}
        for r in doc.get("rejected", []):
            errors = r.get("errors") or [{}]
            reason, error = r.get("reason", "?"), errors[0].get("error", "?")
            rejected[int(r["index"])] = reason if error.lower() == reason else f"{reason}: {error}"
        # A 400 from validation lists field errors only: the first one names the reason.
        first = (doc.get("errors") or [{}])[0].get("error", "?")
        accepted_readings = 0
        for index, ids in enumerate(owners):
            if index in rejected:
                self.ledger.reject(ids, rejected[index])
            elif status == 207:
                self.ledger.accept(ids)
                accepted_readings += len(ids)
            else:
                self.ledger.reject(ids, f"{doc.get('message', '?')}: {first}")
        claimed = int((doc.get("accepted") or {}).get("readings", 0))
        if status == 207 and claimed != accepted_readings:
            log.error(
                "207 says %d readings accepted, the ledger counts %d", claimed, accepted_readings
            )
            self.ledger.answered(self.schedule.current, "207 count mismatch")

    def _items(
        self, batch: list[int]
    ) -> tuple[list[tuple[str, list[dict[str, Any]]]], list[list[int]]]:
        """One item per machine; a few made bad on purpose (unknown machine, value out of range)."""
        ledger = self.ledger
        by_machine: dict[int, list[int]] = {}
        for j in batch:
            by_machine.setdefault(ledger.machine[j], []).append(j)
        items: list[tuple[str, list[dict[str, Any]]]] = []
        owners: list[list[int]] = []
        for m, ids in by_machine.items():
            readings = [reading(ledger.ts_us[j], self.values(m)) for j in ids]
            machine_id = ledger.machines[m]
            if self.rng.random() < self.bad_share:
                if self.rng.random() < 0.5:
                    machine_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
                    for j in ids:
                        ledger.machine[j] = -1
                        ledger.unknown_machines[j] = machine_id
                else:
                    readings[0]["temperature"] = OUT_OF_RANGE
            items.append((machine_id, readings))
            owners.append(ids)
        return items, owners


class MqttGateway(Door):
    def __init__(
        self,
        ledger: DoorLedger,
        pacer: Pacer,
        stop: threading.Event,
        *,
        seed: int,
        credentials: tuple[str, str],
        factory_id: str,
        readings_per_message: int,
        flush_timeout_s: float,
        send_every_s: float = 0.1,
    ) -> None:
        super().__init__("chaos-mqtt", ledger, pacer, stop, seed, factory_id, send_every_s)
        # A gateway of the run's factory: the edge lets it publish for that factory's machines.
        self.client_id, self._secret = credentials
        self.readings_per_message = readings_per_message
        self.flush_timeout_s = flush_timeout_s
        self.publisher: MqttPublisher | None = None

    def send_all(self) -> None:
        s = MqttSettings()
        publisher = MqttPublisher(
            s.host,
            s.port,
            client_id=self.client_id,  # a client id: persistent session (clean_session=False)
            username=self.client_id,
            password=self._secret,
            max_outstanding=5000,
        ).connect()
        self.publisher = publisher
        machines = len(self.ledger.machines)
        buffers: list[list[int]] = [[] for _ in range(machines)]
        try:
            while len(self.ledger) < self.pacer.total and not self.stop.is_set():
                fresh = self.new_readings(10_000)
                if not fresh:
                    self.stop.wait(self.send_every_s)
                    continue
                for j in fresh:
                    buf = buffers[self.ledger.machine[j]]
                    buf.append(j)
                    if len(buf) >= self.readings_per_message:
                        self._publish(buf)
                        buf.clear()
            for buf in buffers:
                if buf:
                    self._publish(buf)
            deadline = time.monotonic() + self.flush_timeout_s
            while not publisher.flush(1.0):
                if self.stop.is_set() or time.monotonic() > deadline:
                    log.error("%d MQTT messages never acknowledged", publisher.outstanding)
                    break
        finally:
            publisher.close(0)
            self._settle(publisher)
            forget_session(
                s.model_copy(
                    update={"username": self.client_id, "password": SecretStr(self._secret)}
                ),
                self.client_id,
            )

    def _publish(self, ids: list[int]) -> None:
        assert self.publisher is not None
        ledger = self.ledger
        m = ledger.machine[ids[0]]
        topic = telemetry_topic(self.factory_id, ledger.machines[m])
        payload = mqtt_payload([reading(ledger.ts_us[j], self.values(m)) for j in ids])
        self.publisher.publish(topic, payload, key=tuple(ids))
        ledger.answered(ledger.phase[ids[0]], "published")

    def _settle(self, publisher: MqttPublisher) -> None:
        """PUBACKed messages are accepted; the rest were sent but never acknowledged."""
        ledger = self.ledger
        for key in list(publisher.acked_keys):
            assert isinstance(key, tuple)
            ledger.accept(key)
            ledger.answered(ledger.phase[key[0]], "PUBACK")
        ledger.give_up(range(len(ledger)))


def forget_session(settings: MqttSettings, client_id: str) -> None:
    """Connect once with a clean session so that the edge drops the run's persistent one."""
    client = mqtt_client(settings, client_id)
    try:
        client.connect(settings.host, settings.port, keepalive=10)
        client.loop(timeout=2.0)  # CONNACK: the broker has discarded the old session
        client.disconnect()
    except OSError as e:
        log.warning("could not clear the MQTT session %s: %s", client_id, e)
