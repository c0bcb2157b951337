"""Alert changes sent out of Millrace: a retained MQTT topic per machine (SCADA/HMI see the
current alerts of a machine as soon as they subscribe) and optional webhooks, signed with
HMAC-SHA256 (``X-Millrace-Signature: sha256=<hex of the body>``), retried with backoff. Every
delivery attempt is logged in ``alert_deliveries``.

Fed by ``telemetry.alerter.notify``, bound to ``alert.#``: the alert changes this service makes
and the ones people make through the API (acknowledge, clear) take the same road.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import socket
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from prometheus_client import Counter
from tenacity import AsyncRetrying, RetryError, stop_after_attempt, wait_exponential

from services.alerter import consuming
from services.alerter.settings import Settings
from services.alerter.store import AlertStore
from shared import alert_events
from shared.db import DB_UNAVAILABLE
from shared.edge import service_credentials

log = logging.getLogger(__name__)
MQTT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, *DB_UNAVAILABLE)
DELIVERIES = Counter(
    "millrace_alerter_deliveries_total", "Notification attempts", ["channel", "outcome"]
)


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class MqttNotifier:
    """paho's network loop runs in its own thread; publishes wait for the broker's PUBACK."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        m = settings.mqtt
        # One id per replica: two clients with one id would disconnect each other forever.
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{m.client_id}-{socket.gethostname()}-{os.getpid()}",
            protocol=mqtt.MQTTv311,  # what the MQTT edge (RabbitMQ's MQTT plugin) speaks
        )
        if (credentials := service_credentials(m, settings.amqp)) is not None:
            self.client.username_pw_set(*credentials)

    def start(self) -> None:
        m = self.settings.mqtt
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive_s)
        self.client.loop_start()

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def topic(self, machine_id: str) -> str:
        return f"{self.settings.alerter.mqtt_topic_prefix}/{machine_id}"

    async def publish(self, machine_id: str, payload: bytes) -> None:
        info = self.client.publish(self.topic(machine_id), payload, qos=1, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"MQTT publish refused: {mqtt.error_string(info.rc)}")
        await asyncio.to_thread(info.wait_for_publish, 5.0)
        if not info.is_published():
            raise ConnectionError("MQTT broker did not acknowledge in 5 s")

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Notifier:
    def __init__(
        self, settings: Settings, connection: AbstractRobustConnection, store: AlertStore
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.store = store
        self.mqtt = MqttNotifier(settings)
        self.http = httpx.AsyncClient(timeout=10)
        self._channel: AbstractChannel | None = None
        self._task: asyncio.Task[None] | None = None
        self._webhooks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.mqtt.start()
        self._channel = await self.connection.channel()
        await self._channel.set_qos(prefetch_count=20)
        exchange = await self._channel.declare_exchange(
            self.settings.amqp.exchange, "topic", durable=True
        )
        queue = await self._channel.declare_queue(
            self.settings.alerter.notify_queue,
            durable=True,
            arguments={"x-queue-type": "quorum", "x-single-active-consumer": True},
        )
        await queue.bind(exchange, routing_key=alert_events.BINDING)
        self._task = asyncio.create_task(consuming.in_order(queue, self.handle))

    @property
    def consuming(self) -> bool:
        return self._task is not None and not self._task.done()

    async def handle(self, message: AbstractIncomingMessage) -> None:
        change = await consuming.decoded(message, alert_events.decode, "notifier")
        if change is None:
            return
        event, alert = change
        try:
            await self._mqtt(event, alert)
        except MQTT_ERRORS as e:
            log.warning("notifier: MQTT delivery failed, retrying: %s", e)
            await asyncio.sleep(1)
            await message.nack(requeue=True)
            return
        for url in self.settings.alerter.webhooks:
            task = asyncio.create_task(self.deliver_webhook(url, event, alert))
            self._webhooks.add(task)
            task.add_done_callback(self._webhooks.discard)
        await message.ack()

    async def _mqtt(self, event: str, alert: dict[str, Any]) -> None:
        machine = str(alert["machine_id"])
        current = await self.store.machine_open_alerts(machine)
        payload = orjson.dumps(
            {"machine_id": machine, "open_alerts": current, "last_event": event, "alert": alert}
        )
        try:
            await self.mqtt.publish(machine, payload)
        except ConnectionError as e:
            DELIVERIES.labels("mqtt", "failed").inc()
            await self.store.log_delivery(
                alert["id"], event, "mqtt", self.mqtt.topic(machine), 1, False, error=str(e)
            )
            raise
        DELIVERIES.labels("mqtt", "ok").inc()
        await self.store.log_delivery(alert["id"], event, "mqtt", self.mqtt.topic(machine), 1, True)

    async def deliver_webhook(self, url: str, event: str, alert: dict[str, Any]) -> None:
        body = orjson.dumps({"event": event, "alert": alert})
        headers = {"Content-Type": "application/json", "X-Millrace-Event": f"alert.{event}"}
        if self.settings.alerter.webhook_secret is not None:
            secret = self.settings.alerter.webhook_secret.get_secret_value().encode()
            headers["X-Millrace-Signature"] = signature(secret, body)
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.settings.alerter.webhook_attempts),
                wait=wait_exponential(
                    multiplier=0.5, max=self.settings.alerter.webhook_backoff_max_s
                ),
            ):
                with attempt:
                    n = attempt.retry_state.attempt_number
                    status, error = None, None
                    try:
                        resp = await self.http.post(url, content=body, headers=headers)
                        status = resp.status_code
                        ok = 200 <= status < 300
                        error = None if ok else f"HTTP {status}"
                    except httpx.HTTPError as e:
                        ok, error = False, f"{type(e).__name__}: {e}"
                    DELIVERIES.labels("webhook", "ok" if ok else "failed").inc()
                    await self.store.log_delivery(
                        alert["id"], event, "webhook", url, n, ok, status, error
                    )
                    if not ok:
                        raise ConnectionError(error)
        except RetryError:
            log.error(
                "webhook %s: alert %s %s not delivered after %d attempts",
                url,
                alert["id"],
                event,
                self.settings.alerter.webhook_attempts,
            )
        except DB_UNAVAILABLE as e:
            log.warning("webhook delivery log failed: %s", e)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._webhooks):
            task.cancel()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        await self.http.aclose()
        self.mqtt.stop()
