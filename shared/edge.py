"""The MQTT edge: RabbitMQ's MQTT plugin is the broker gateways connect to.

A gateway's QoS 1 PUBLISH goes to the topic exchange ``amq.topic`` (routing key = the topic with
"/" as "."), which routes it to the quorum queue ``mqtt.telemetry``; the plugin sends PUBACK only
after that queue confirmed it, so a PUBACK means the reading is on disk (a broker crash loses
nothing acknowledged). The bridges consume that queue as competing consumers, publish what they
validated to the ``telemetry`` exchange with confirms, and only then ack. When the queue is full
(``MQTT_EDGE_MAX_BYTES``) it refuses publishes (``reject-publish``): the gateway's connection is
closed without a PUBACK and the gateway keeps the reading. See docs/architecture.md.

Whoever starts first declares the queue and its binding (the bridge at start-up, and
``python -m tools.edge`` in ``make up``), idempotently and with the same arguments.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from aio_pika.abc import AbstractChannel, AbstractQueue
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.broker import DEAD_LETTER_ROUTING_KEY, declare_topology
from shared.mqtt_topics import TopicTemplate, binding_key, binding_of
from shared.settings import AmqpSettings, MqttSettings

MQTT_EXCHANGE = "amq.topic"
DEFAULT_TEMPLATE = "factory/{factory_id}/machine/{machine_id}/telemetry"


class EdgeSettings(BaseSettings):
    """``MQTT_EDGE_*`` (and the bridge's topic template, which auth reads too)."""

    # By field name too, so code can build one (``EdgeSettings(topic_template=...)``); with the
    # prefix that also reads MQTT_EDGE_TOPIC_TEMPLATE, never a bare QUEUE or MAX_BYTES.
    model_config = SettingsConfigDict(
        env_prefix="MQTT_EDGE_", extra="ignore", case_sensitive=False, populate_by_name=True
    )

    queue: str = "mqtt.telemetry"
    # What the edge keeps for bridges that are down or behind, in bytes of message bodies. Past
    # it, publishes are refused (no PUBACK) rather than dropped.
    max_bytes: int = Field(default=2 * 1024**3, ge=1)
    # Where factory and machine ids sit in a telemetry topic (the bridge parses it, auth
    # authorises publishes with it).
    topic_template: str = Field(
        default=DEFAULT_TEMPLATE, validation_alias="MQTT_BRIDGE_TOPIC_TEMPLATE"
    )

    @property
    def template(self) -> TopicTemplate:
        return TopicTemplate(self.topic_template)


def queue_arguments(edge: EdgeSettings, amqp: AmqpSettings) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-max-length-bytes": edge.max_bytes,
        "x-overflow": "reject-publish",
        # A message that keeps failing (a bridge crashing on it) ends in telemetry.dead.
        "x-delivery-limit": amqp.delivery_limit,
        "x-dead-letter-exchange": amqp.dead_letter,
        "x-dead-letter-routing-key": DEAD_LETTER_ROUTING_KEY,
    }


async def declare(
    channel: AbstractChannel,
    edge: EdgeSettings,
    amqp: AmqpSettings,
    topic_filters: list[str] | None = None,
) -> AbstractQueue:
    """The edge queue, bound to every telemetry topic of the template and to the MQTT topic
    filters given (``MQTT_TOPICS``), and the topology it dead-letters into."""
    await declare_topology(channel, amqp)
    queue = await channel.declare_queue(
        edge.queue, durable=True, arguments=queue_arguments(edge, amqp)
    )
    keys = {binding_key(edge.template), *(binding_of(f) for f in topic_filters or [])}
    for key in sorted(keys):
        await queue.bind(MQTT_EXCHANGE, key)
    return queue


def mqtt_client(
    settings: MqttSettings, client_id: str, amqp: AmqpSettings | None = None
) -> mqtt.Client:
    """A paho client for the edge: MQTT 3.1.1 (what RabbitMQ 3.10's plugin speaks), a clean
    session, signed in as :func:`service_credentials` says."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    if (credentials := service_credentials(settings, amqp or AmqpSettings())) is not None:
        client.username_pw_set(*credentials)
    return client


def service_credentials(mqtt: MqttSettings, amqp: AmqpSettings) -> tuple[str, str | None] | None:
    """How a Millrace service signs in to the edge: ``MQTT_USERNAME``/``MQTT_PASSWORD`` when set,
    else the broker user of ``AMQP_URL`` (the edge is the same RabbitMQ)."""
    if mqtt.username:
        return mqtt.username, mqtt.password.get_secret_value() if mqtt.password else None
    url = urlsplit(amqp.url.get_secret_value())
    if not url.username:
        return None
    return unquote(url.username), unquote(url.password) if url.password else None
