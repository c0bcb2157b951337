from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

from shared.edge import EdgeSettings
from shared.mqtt_topics import TopicTemplate, status_topic
from shared.settings import (
    ServiceSettings,
    UsesAmqp,
    UsesIngestLimits,
    UsesMqtt,
    UsesPostgres,
    UsesRedis,
    env_config,
)

# Edge messages prefetched and not yet acknowledged, at most (bounds the bridge's memory).
MAX_INFLIGHT_CEILING = 20_000


class BridgeOptions(BaseSettings):
    """``MQTT_BRIDGE_*``: the bridge's own options (the edge's are ``settings.edge``)."""

    model_config = env_config("MQTT_BRIDGE_")

    # Unacknowledged edge messages the broker may have in flight to this bridge (AMQP prefetch).
    max_inflight: int = Field(default=2000, ge=1, le=MAX_INFLIGHT_CEILING)
    # A group (one validation pass, one set of confirmed publishes, then the PUBACKs) closes at
    # this many MQTT messages or after this many milliseconds, whichever comes first.
    group_max_messages: int = Field(default=1000, ge=1)
    group_wait_ms: float = Field(default=5.0, ge=0)
    # Groups being published at once; PUBACKs still go out in the order messages arrived.
    groups_in_flight: int = Field(default=4, ge=1)
    reconnect_min_s: int = Field(default=1, ge=1)
    reconnect_max_s: int = Field(default=30, ge=1)
    # Longest wait between two attempts at publishing a group RabbitMQ refused.
    retry_max_s: float = Field(default=10.0, gt=0)


class Settings(ServiceSettings, UsesAmqp, UsesPostgres, UsesRedis, UsesMqtt, UsesIngestLimits):
    port: int = Field(default=8004, validation_alias="MQTT_BRIDGE_PORT")
    bridge: BridgeOptions = Field(default_factory=BridgeOptions)
    # The edge queue, its bound, and the telemetry topic template (MQTT_BRIDGE_TOPIC_TEMPLATE).
    edge: EdgeSettings = Field(default_factory=EdgeSettings)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        TopicTemplate(self.edge.topic_template)  # refuses a template without both ids
        return self

    @property
    def status_topic(self) -> str:
        return status_topic(self.mqtt.client_id)
