"""Bridge and edge settings: defaults, environment names, refused configurations, and how a
Millrace service signs in to the edge."""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr, ValidationError

from services.mqtt_bridge.settings import MAX_INFLIGHT_CEILING, BridgeOptions, Settings
from shared.edge import EdgeSettings, service_credentials
from shared.settings import AmqpSettings, MqttSettings


def test_defaults() -> None:
    s = Settings()
    assert s.port == 8004
    assert s.mqtt.topics == ["factory/+/machine/+/telemetry"]
    assert s.status_topic == f"factory/bridge/{s.mqtt.client_id}/status"
    assert s.edge.queue == "mqtt.telemetry"
    assert s.edge.topic_template == "factory/{factory_id}/machine/{machine_id}/telemetry"


NEEDS_BOTH = re.escape("needs {factory_id} and {machine_id}")


def test_template_must_name_both_ids() -> None:
    with pytest.raises(ValidationError, match=NEEDS_BOTH):
        Settings(edge=EdgeSettings(topic_template="factory/{factory_id}/telemetry"))


def test_the_template_variable_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_BRIDGE_TOPIC_TEMPLATE", "plant/{machine_id}")
    with pytest.raises(ValidationError, match=NEEDS_BOTH):
        Settings()


def test_prefetch_is_bounded() -> None:
    BridgeOptions(max_inflight=MAX_INFLIGHT_CEILING)
    for refused in (0, MAX_INFLIGHT_CEILING + 1):
        with pytest.raises(ValidationError):
            BridgeOptions(max_inflight=refused)


def test_the_edge_queue_needs_room() -> None:
    with pytest.raises(ValidationError):
        EdgeSettings(max_bytes=0)


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_BRIDGE_PORT", "9100")
    monkeypatch.setenv("MQTT_TOPICS", '["a/+/b/+/c", "x/#"]')
    monkeypatch.setenv("MQTT_CLIENT_ID", "bridge-7")
    monkeypatch.setenv("MQTT_BRIDGE_GROUP_WAIT_MS", "2.5")
    monkeypatch.setenv("MQTT_BRIDGE_TOPIC_TEMPLATE", "a/{factory_id}/b/{machine_id}/c")
    monkeypatch.setenv("MQTT_EDGE_QUEUE", "edge.q")
    monkeypatch.setenv("MQTT_EDGE_MAX_BYTES", "1048576")
    s = Settings()
    assert (s.port, s.mqtt.topics, s.bridge.group_wait_ms) == (9100, ["a/+/b/+/c", "x/#"], 2.5)
    assert s.status_topic == "factory/bridge/bridge-7/status"
    assert (s.edge.topic_template, s.edge.queue, s.edge.max_bytes) == (
        "a/{factory_id}/b/{machine_id}/c",
        "edge.q",
        1048576,
    )


def amqp(url: str) -> AmqpSettings:
    return AmqpSettings(url=SecretStr(url))


def test_services_sign_in_to_the_edge_as_the_broker_user_of_amqp_url() -> None:
    assert service_credentials(MqttSettings(), amqp("amqp://guest:guest@127.0.0.1:5672/")) == (
        "guest",
        "guest",
    )
    # Percent-encoded in the URL, plain on the wire.
    assert service_credentials(MqttSettings(), amqp("amqp://svc%40m:p%2Fw%3A@h:5672/")) == (
        "svc@m",
        "p/w:",
    )
    assert service_credentials(MqttSettings(), amqp("amqp://only@h/")) == ("only", None)
    assert service_credentials(MqttSettings(), amqp("amqp://h:5672/")) is None


def test_mqtt_username_wins_over_the_amqp_user() -> None:
    mqtt = MqttSettings(username="bridge", password=SecretStr("s3"))
    assert service_credentials(mqtt, amqp("amqp://guest:guest@h/")) == ("bridge", "s3")
    assert service_credentials(MqttSettings(username="bridge"), amqp("amqp://g:g@h/")) == (
        "bridge",
        None,
    )


def test_edge_reads_only_its_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bare names common in containers (QUEUE, MAX_BYTES) are never the edge's settings."""
    monkeypatch.setenv("QUEUE", "not-the-edge")
    monkeypatch.setenv("MAX_BYTES", "5")
    assert EdgeSettings().queue == "mqtt.telemetry"
    assert EdgeSettings().max_bytes == 2 * 1024**3
    monkeypatch.setenv("MQTT_EDGE_QUEUE", "edge-q")
    monkeypatch.setenv("MQTT_EDGE_MAX_BYTES", "4096")
    monkeypatch.setenv("MQTT_BRIDGE_TOPIC_TEMPLATE", "f/{factory_id}/m/{machine_id}")
    edge = EdgeSettings()
    assert (edge.queue, edge.max_bytes, edge.topic_template) == (
        "edge-q",
        4096,
        "f/{factory_id}/m/{machine_id}",
    )
