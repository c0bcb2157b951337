from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from shared.settings import (
    AmqpSettings,
    MqttSettings,
    PostgresSettings,
    RedisSettings,
    ServiceSettings,
    env_config,
)


class AlerterOptions(BaseSettings):
    """``ALERTER_*``: the alerter's own options."""

    model_config = env_config("ALERTER_")

    # Readings queue (single active consumer: one replica evaluates, in order) and the queue
    # of alert changes the notifier sends out.
    queue: str = "telemetry.alerter"
    notify_queue: str = "telemetry.alerter.notify"
    # Messages the readings queue holds while no alerter runs; the oldest are dropped beyond
    # it (never refused: a stopped alerter must not stop ingest).
    queue_max_length: int = Field(default=200_000, ge=1)
    prefetch: int = Field(default=100, ge=1)
    # Rules and the max_temperature_threshold setting are re-read this often.
    rules_refresh_s: float = Field(default=2.0, gt=0)
    offline_sweep_s: float = Field(default=5.0, gt=0)
    # The max_temperature_threshold rule clears this many degrees below the threshold.
    default_hysteresis: float = Field(default=2.0, ge=0)
    default_severity: str = "major"
    # Retained topic per machine: <prefix>/<machine_id>.
    mqtt_topic_prefix: str = Field(default="millrace/alerts", validation_alias="ALERTER_MQTT_TOPIC")
    # Webhooks (comma-separated URLs), signed with HMAC-SHA256 when a secret is set.
    webhook_urls: str = ""
    webhook_secret: SecretStr | None = None
    webhook_attempts: int = Field(default=5, ge=1)
    webhook_backoff_max_s: float = Field(default=30.0, gt=0)

    @property
    def webhooks(self) -> list[str]:
        return [u.strip() for u in self.webhook_urls.split(",") if u.strip()]


class Settings(ServiceSettings):
    port: int = Field(default=8006, validation_alias="ALERTER_PORT")
    alerter: AlerterOptions = Field(default_factory=AlerterOptions)
    amqp: AmqpSettings = Field(default_factory=AmqpSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    mqtt: MqttSettings = Field(default_factory=lambda: MqttSettings(client_id="millrace-alerter"))
