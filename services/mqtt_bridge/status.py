"""The bridge's own status on the edge: ``online``/``offline``, retained, with a last will.

A small paho client (MQTT 3.1.1, what RabbitMQ's MQTT plugin speaks) signed in as a service user
of the broker. Readings do not pass through it: they come from the edge queue over AMQP.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import paho.mqtt.client as mqtt

from services.mqtt_bridge import metrics
from services.mqtt_bridge.settings import Settings
from shared.edge import mqtt_client

log = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"


class StatusLink:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        s = settings
        # Replicas may share MQTT_CLIENT_ID (compose --scale): two connections with one client id
        # would disconnect each other forever, so the connection's id names the process too.
        self._client = mqtt_client(
            s.mqtt, f"{s.mqtt.client_id}-{socket.gethostname()}-{os.getpid()}"[:120], s.amqp
        )
        self._client.will_set(s.status_topic, OFFLINE, qos=1, retain=True)
        self._client.reconnect_delay_set(s.bridge.reconnect_min_s, s.bridge.reconnect_max_s)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self.connected = False
        self._closing = False

    def start(self) -> None:
        s = self.settings
        self._client.connect_async(s.mqtt.host, s.mqtt.port, keepalive=s.mqtt.keepalive_s)
        self._client.loop_start()

    async def stop(self, timeout_s: float) -> None:
        self._closing = True
        if self.connected:
            info = self._client.publish(self.settings.status_topic, OFFLINE, qos=1, retain=True)
            try:
                await asyncio.to_thread(info.wait_for_publish, timeout_s)
            except (RuntimeError, ValueError) as e:
                log.warning("could not publish offline status: %s", e)
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        metrics.CONNECTED.set(0)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            log.warning("MQTT edge refused the status connection: %s; retrying", rc)
            return
        self.connected = True
        metrics.CONNECTED.set(1)
        client.publish(self.settings.status_topic, ONLINE, qos=1, retain=True)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self.connected = False
        metrics.CONNECTED.set(0)
        if not self._closing:
            log.warning("MQTT status connection lost (%s); reconnecting", rc)
