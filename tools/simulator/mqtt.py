"""A gateway's MQTT side: QoS 1 publishes with a bounded number awaiting PUBACK.

It speaks MQTT 3.1.1, what the edge (RabbitMQ's MQTT plugin) speaks. The edge signs in a gateway
with its client id as username and its secret as password, and the MQTT client id must be the
client id or start with ``<client id>-``; a Millrace service signs in as a broker user
(``shared.edge.service_credentials``). A publish the edge refuses (a topic outside the gateway's
machines) closes the connection without PUBACK.

paho numbers QoS 1 messages with 16-bit ids that wrap: with more than 65,535 messages awaiting
PUBACK, ids collide and publishes stall. ``max_outstanding`` keeps far below that: ``publish``
blocks until the broker has acknowledged enough earlier messages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)


class MqttPublisher:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        client_id: str = "",
        username: str | None = None,
        password: str | None = None,
        qos: int = 1,
        max_outstanding: int = 1000,
        keepalive_s: int = 30,
    ) -> None:
        if not 1 <= max_outstanding <= 20_000:
            raise ValueError("max_outstanding must be within 1..20000 (message ids are 16-bit)")
        self.host = host
        self.port = port
        self.qos = qos
        self._slots = threading.BoundedSemaphore(max_outstanding)
        self._lock = threading.Condition()
        self._keys: dict[int, Hashable] = {}  # mid → caller's key, awaiting PUBACK
        self._early: set[int] = set()  # PUBACK seen before publish() recorded the mid
        self._connected = threading.Event()
        self._answered = threading.Event()  # CONNACK received, accepted or not
        self.refused: str | None = None  # why the broker refused the last connection
        self.disconnects = 0
        self.sent = 0
        self.acked = 0
        self.acked_keys: list[Hashable] = []
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=not client_id,
        )
        if username:
            self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(min(max_outstanding, 1000))
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(1, 10)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._keepalive = keepalive_s

    def connect(self, timeout_s: float = 10.0) -> MqttPublisher:
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive)
        self._client.loop_start()
        if not self._answered.wait(timeout_s) or not self._connected.is_set():
            self._client.disconnect()
            self._client.loop_stop()
            if self.refused is not None:
                raise ConnectionError(
                    f"MQTT broker {self.host}:{self.port} refused the connection: {self.refused}"
                    " (username, password and client id must be a broker user's, or a"
                    " gateway's client id, secret and <client id>[-suffix])"
                )
            raise ConnectionError(f"MQTT broker {self.host}:{self.port} did not answer")
        return self

    def publish(self, topic: str, payload: bytes, key: Hashable = None) -> None:
        """Queue one message; blocks while ``max_outstanding`` messages await their PUBACK."""
        self._slots.acquire()
        info = self._client.publish(topic, payload, qos=self.qos)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._slots.release()
            raise ConnectionError(f"publish refused by paho: {mqtt.error_string(info.rc)}")
        with self._lock:
            self.sent += 1
            if self.qos == 0:
                self.acked += 1
                self._slots.release()
            elif info.mid in self._early:
                self._early.discard(info.mid)
                self._acked(key)
            else:
                self._keys[info.mid] = key

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Wait until every message published so far was acknowledged by the broker."""
        with self._lock:
            return self._lock.wait_for(lambda: self.acked >= self.sent, timeout_s)

    @property
    def outstanding(self) -> int:
        with self._lock:
            return self.sent - self.acked

    def close(self, timeout_s: float = 60.0) -> None:
        self.flush(timeout_s)
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttPublisher:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # paho thread
    def _acked(self, key: Hashable) -> None:
        self.acked += 1
        self.acked_keys.append(key)
        self._slots.release()
        self._lock.notify_all()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if self.qos == 0:
            return
        with self._lock:
            if mid in self._keys:
                self._acked(self._keys.pop(mid))
            else:
                self._early.add(mid)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, props: Any
    ) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            log.warning("MQTT broker refused the connection: %s", reason_code)
            self._answered.set()
            return
        self.refused = None
        self._connected.set()
        self._answered.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, props: Any
    ) -> None:
        self._connected.clear()
        self.disconnects += 1
        if reason_code.is_failure:
            log.warning(
                "MQTT connection lost (%s) with %d message(s) awaiting PUBACK; paho reconnects and"
                " resends (the edge also closes the connection when it refuses a publish: a topic"
                " this user may not publish to)",
                reason_code,
                self.outstanding,
            )
