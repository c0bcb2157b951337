from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.mqtt_bridge.topics import status_topic
from shared.settings import (
    ServiceSettings,
    UsesAmqp,
    UsesIngestLimits,
    UsesMqtt,
    UsesPostgres,
    UsesRedis,
)

# paho (and MQTT itself) number in-flight QoS 1 messages with 16-bit ids: stay far below 65,535.
MAX_INFLIGHT_CEILING = 20_000


class Settings(ServiceSettings, UsesAmqp, UsesPostgres, UsesRedis, UsesMqtt, UsesIngestLimits):
    # Fields are set by their environment names (MQTT_BRIDGE_*), or by field name in code.
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, populate_by_name=True)

    port: int = Field(default=8004, validation_alias="MQTT_BRIDGE_PORT")
    # Where factory and machine ids sit in a telemetry topic.
    topic_template: str = Field(
        default="factory/{factory_id}/machine/{machine_id}/telemetry",
        validation_alias="MQTT_BRIDGE_TOPIC_TEMPLATE",
    )
    # Unacknowledged QoS 1 messages the broker may have in flight to the bridge (MQTT 5 Receive
    # Maximum, also enforced locally). Bounds memory and keeps message ids far from wrapping.
    max_inflight: int = Field(
        default=2000, ge=1, le=MAX_INFLIGHT_CEILING, validation_alias="MQTT_BRIDGE_MAX_INFLIGHT"
    )
    # A group (one validation pass, one set of confirmed publishes, then the PUBACKs) closes at
    # this many MQTT messages or after this many milliseconds, whichever comes first.
    group_max_messages: int = Field(
        default=1000, ge=1, validation_alias="MQTT_BRIDGE_GROUP_MAX_MESSAGES"
    )
    group_max_wait_ms: float = Field(
        default=5.0, ge=0, validation_alias="MQTT_BRIDGE_GROUP_WAIT_MS"
    )
    # Groups being published at once; PUBACKs still go out in the order messages arrived.
    groups_in_flight: int = Field(default=4, ge=1, validation_alias="MQTT_BRIDGE_GROUPS_IN_FLIGHT")
    # MQTT 5 session expiry: how long Mosquitto keeps the subscriptions and queues readings
    # for a bridge that is down.
    session_expiry_s: int = Field(
        default=7 * 24 * 3600, ge=1, validation_alias="MQTT_BRIDGE_SESSION_EXPIRY_S"
    )
    reconnect_min_s: int = Field(default=1, ge=1, validation_alias="MQTT_BRIDGE_RECONNECT_MIN_S")
    reconnect_max_s: int = Field(default=30, ge=1, validation_alias="MQTT_BRIDGE_RECONNECT_MAX_S")
    # Longest wait between two attempts at publishing a group RabbitMQ refused.
    retry_max_s: float = Field(default=10.0, gt=0, validation_alias="MQTT_BRIDGE_RETRY_MAX_S")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.mqtt.qos != 1:
            raise ValueError("MQTT_QOS must be 1: the bridge acknowledges after RabbitMQ confirmed")
        if "{factory_id}" not in self.topic_template or "{machine_id}" not in self.topic_template:
            raise ValueError("MQTT_BRIDGE_TOPIC_TEMPLATE needs {factory_id} and {machine_id}")
        return self

    @property
    def status_topic(self) -> str:
        return status_topic(self.mqtt.client_id)
