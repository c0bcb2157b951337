"""Prometheus metrics of the bridge (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.mqtt_payload import DeadReason

MESSAGES = Counter(
    "millrace_mqtt_messages_total",
    "MQTT messages finished, by outcome (published, dead_lettered, ignored)",
    ["outcome"],
)
DEAD_LETTERS = Counter(
    "millrace_mqtt_dead_letters_total",
    "MQTT messages sent to telemetry.dead, by reason",
    ["reason"],
)
for _reason in DeadReason:
    DEAD_LETTERS.labels(_reason.value)
READINGS = Counter("millrace_mqtt_readings_total", "Readings from MQTT confirmed by RabbitMQ")
GROUP_MESSAGES = Histogram(
    "millrace_mqtt_group_messages",
    "MQTT messages per group (one validation pass and one set of confirmed publishes)",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
GROUP_SECONDS = Histogram(
    "millrace_mqtt_group_seconds",
    "From a group closing to RabbitMQ confirming all of it",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PUBLISH_RETRIES = Counter(
    "millrace_mqtt_publish_retries_total", "Group publish attempts that failed and were retried"
)
UNACKED = Gauge("millrace_mqtt_unacked_messages", "MQTT messages received and not yet finished")
STALE = Counter(
    "millrace_mqtt_stale_messages_total",
    "Messages not acknowledged because their connection was lost (the broker redelivers them)",
)
CONNECTED = Gauge("millrace_mqtt_connected", "1 while connected to the MQTT broker")
