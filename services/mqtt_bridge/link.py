"""The MQTT side of the bridge: a paho client in its own thread, feeding the asyncio loop.

paho runs its network loop in a thread of its own (``loop_start``) and reconnects by itself with
exponential backoff. Messages are handed to the asyncio loop with ``call_soon_threadsafe``. QoS 1
messages are acknowledged manually (``manual_ack=True``), and only through :meth:`MqttLink.ack`.

Two rules keep acknowledgements correct across reconnects:

- Every (re)connection starts a new *generation*. A message is acknowledged only on the
  connection it arrived on; one from an earlier connection is not acknowledged at all — the
  broker redelivers it in the resumed session, and that copy is acknowledged. An acknowledgement
  sent on the wrong connection could otherwise free a message id the broker has already reused
  for another message.
- The number of messages received and not yet finished is bounded (MQTT 5 Receive Maximum asks
  the broker; a semaphore enforces it here), far below the 65,535 message ids MQTT has.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from services.mqtt_bridge import metrics
from services.mqtt_bridge.settings import Settings

log = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"


@dataclass(slots=True)
class Inbound:
    """One MQTT message as the asyncio side sees it."""

    mid: int
    qos: int
    topic: str | None  # None when the topic is not valid UTF-8
    payload: bytes
    generation: int


class MqttLink:
    def __init__(
        self,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Inbound], None],
    ) -> None:
        self.settings = settings
        self._loop = loop
        self._deliver = deliver
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._subscribed = False
        self._subscribe_mid: int | None = None
        self._closing = threading.Event()
        self._slots = threading.BoundedSemaphore(settings.max_inflight)
        self._pending = 0
        # Messages cross from paho's thread in batches: one loop wake-up for all that arrived
        # since the last one, not a self-pipe write per message.
        self._handoff: deque[Inbound] = deque()
        self._wake_pending = False
        self._client = self._build_client()

    # ------------------------------------------------------------------ life cycle
    def _build_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.mqtt.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if s.mqtt.username:
            password = s.mqtt.password.get_secret_value() if s.mqtt.password else None
            client.username_pw_set(s.mqtt.username, password)
        client.will_set(s.status_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
        # Outgoing traffic is only the status topic; keep paho's own queue bounded too.
        client.max_inflight_messages_set(20)
        client.max_queued_messages_set(100)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting until :meth:`stop`."""
        s = self.settings
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = s.session_expiry_s
        props.ReceiveMaximum = s.max_inflight
        self._client.connect_async(
            s.mqtt.host,
            s.mqtt.port,
            keepalive=s.mqtt.keepalive_s,
            clean_start=False,  # resume the session: readings queued while we were away
            properties=props,
        )
        self._client.loop_start()
        log.info(
            "connecting to MQTT %s:%d as %s, topics %s",
            s.mqtt.host,
            s.mqtt.port,
            s.mqtt.client_id,
            ", ".join(s.mqtt.topics),
        )

    async def stop(self, timeout_s: float) -> None:
        """Publish ``offline`` (retained), disconnect cleanly, stop paho's thread."""
        self._closing.set()
        if self.connected:
            info = self._client.publish(self.settings.status_topic, OFFLINE, qos=1, retain=True)
            try:
                await asyncio.to_thread(info.wait_for_publish, timeout_s)
            except (RuntimeError, ValueError) as e:
                log.warning("could not publish offline status: %s", e)
            if not info.is_published():
                log.warning("offline status not confirmed within %.1f s", timeout_s)
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        metrics.CONNECTED.set(0)
        log.info("MQTT disconnected")

    # ------------------------------------------------------------------ state
    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def ready(self) -> bool:
        return self._connected and self._subscribed

    @property
    def pending(self) -> int:
        """Messages received and not finished (acknowledged or abandoned)."""
        return self._pending

    # ------------------------------------------------------------------ acknowledgement
    def ack(self, messages: Iterable[Inbound]) -> tuple[int, int]:
        """PUBACK what came on the current connection; free the slot of every message.

        Returns (acknowledged, stale): stale messages arrived on an earlier connection and the
        broker will redeliver them.
        """
        acked = stale = 0
        with self._lock:
            for m in messages:
                if self._connected and m.generation == self._generation:
                    if m.qos > 0:
                        self._client.ack(m.mid, m.qos)
                    acked += 1
                else:
                    stale += 1
        self.release(acked + stale)
        if stale:
            metrics.STALE.inc(stale)
        return acked, stale

    def release(self, count: int) -> None:
        """Free the slots of messages abandoned without acknowledgement (redelivered later)."""
        for _ in range(count):
            self._slots.release()
        with self._lock:
            self._pending -= count
            metrics.UNACKED.set(self._pending)

    # ------------------------------------------------------------ paho callbacks (paho thread)
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning(
                "MQTT broker refused the connection: %s; retrying",
                reason_code,
                extra={"dependency": "mqtt"},
            )
            return
        with self._lock:
            self._generation += 1
            self._connected = True
            self._subscribed = False
        metrics.CONNECTED.set(1)
        log.info(
            "connected to MQTT (session resumed: %s)",
            flags.session_present,
            extra={"dependency": "mqtt"},
        )
        if not flags.session_present:
            log.warning(
                "MQTT session %s was not resumed: readings published while the bridge was away"
                " (if any) were not kept by the broker",
                self.settings.mqtt.client_id,
            )
        topics = [
            (t, SubscribeOptions(qos=self.settings.mqtt.qos)) for t in self.settings.mqtt.topics
        ]
        _, mid = client.subscribe(topics)
        self._subscribe_mid = mid
        client.publish(self.settings.status_topic, ONLINE, qos=1, retain=True)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        log.warning(
            "cannot connect to MQTT %s:%d; retrying with backoff (max %d s)",
            self.settings.mqtt.host,
            self.settings.mqtt.port,
            self.settings.reconnect_max_s,
            extra={"dependency": "mqtt"},
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._connected = False
            self._subscribed = False
        metrics.CONNECTED.set(0)
        if not self._closing.is_set():
            log.warning(
                "MQTT connection lost (%s); reconnecting, unacknowledged messages will be"
                " redelivered",
                reason_code,
                extra={"dependency": "mqtt"},
            )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failed = [
            (topic, rc)
            for topic, rc in zip(self.settings.mqtt.topics, reason_codes, strict=False)
            if rc.is_failure
        ]
        if failed:
            log.error("MQTT subscription refused: %s", ", ".join(f"{t} ({rc})" for t, rc in failed))
            return
        if mid == self._subscribe_mid:
            self._subscribed = True
            log.info("subscribed to %s at QoS %d", ", ".join(self.settings.mqtt.topics), 1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Blocking here stops paho reading from the socket: back-pressure on the broker. It only
        # happens if the broker ignores our Receive Maximum.
        while not self._slots.acquire(timeout=0.5):
            if self._closing.is_set():
                return  # not acknowledged: redelivered on the next session
        try:
            topic: str | None = message.topic
        except UnicodeDecodeError:
            topic = None
        item = Inbound(message.mid, message.qos, topic, bytes(message.payload), self._generation)
        with self._lock:
            self._pending += 1
        self._handoff.append(item)
        if self._wake_pending:
            return
        self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._hand_over)
        except RuntimeError:  # the event loop is closed: we are shutting down
            dropped = len(self._handoff)
            self._handoff.clear()
            self.release(dropped)  # not acknowledged: redelivered on the next session

    def _hand_over(self) -> None:
        """On the asyncio loop: pass on everything paho's thread queued so far."""
        self._wake_pending = False
        handoff = self._handoff
        while handoff:
            self._deliver(handoff.popleft())
