from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.edge import EdgeSettings
from shared.mqtt_topics import TopicTemplate, status_topic
from shared.settings import (
    ServiceSettings,
    UsesAmqp,
    UsesIngestLimits,
    UsesMqtt,
    UsesPostgres,
    UsesRedis,
)

# Edge messages prefetched and not yet acknowledged, at most (bounds the bridge's memory).
MAX_INFLIGHT_CEILING = 20_000


class Settings(ServiceSettings, UsesAmqp, UsesPostgres, UsesRedis, UsesMqtt, UsesIngestLimits):
    # Fields are set by their environment names (MQTT_BRIDGE_*), or by field name in code.
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, populate_by_name=True)

    port: int = Field(default=8004, validation_alias="MQTT_BRIDGE_PORT")
    # The edge queue, its bound, and the telemetry topic template (MQTT_BRIDGE_TOPIC_TEMPLATE).
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    # Unacknowledged edge messages the broker may have in flight to this bridge (AMQP prefetch).
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
    reconnect_min_s: int = Field(default=1, ge=1, validation_alias="MQTT_BRIDGE_RECONNECT_MIN_S")
    reconnect_max_s: int = Field(default=30, ge=1, validation_alias="MQTT_BRIDGE_RECONNECT_MAX_S")
    # Longest wait between two attempts at publishing a group RabbitMQ refused.
    retry_max_s: float = Field(default=10.0, gt=0, validation_alias="MQTT_BRIDGE_RETRY_MAX_S")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        TopicTemplate(self.edge.topic_template)  # refuses a template without both ids
        return self

    @property
    def status_topic(self) -> str:
        return status_topic(self.mqtt.client_id)
