"""Bridge settings refuse configurations that would break at-least-once delivery."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.mqtt_bridge.settings import Settings
from shared.settings import MqttSettings


def test_defaults() -> None:
    s = Settings()
    assert s.port == 8004
    assert s.mqtt.topics == ["factory/+/machine/+/telemetry"]
    assert s.status_topic == f"factory/bridge/{s.mqtt.client_id}/status"
    assert s.max_inflight < 65_535


@pytest.mark.parametrize("qos", [0, 2])
def test_only_qos1_keeps_the_ack_after_confirm_promise(qos: int) -> None:
    with pytest.raises(ValidationError):
        Settings(mqtt=MqttSettings(qos=qos))


def test_template_must_name_both_ids() -> None:
    with pytest.raises(ValidationError):
        Settings(topic_template="factory/{factory_id}/telemetry")


def test_in_flight_stays_far_below_the_message_id_space() -> None:
    with pytest.raises(ValidationError):
        Settings(max_inflight=60_000)


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_BRIDGE_PORT", "9100")
    monkeypatch.setenv("MQTT_TOPICS", '["a/+/b/+/c", "x/#"]')
    monkeypatch.setenv("MQTT_CLIENT_ID", "bridge-7")
    monkeypatch.setenv("MQTT_BRIDGE_GROUP_WAIT_MS", "2.5")
    s = Settings()
    assert (s.port, s.mqtt.topics, s.group_max_wait_ms) == (9100, ["a/+/b/+/c", "x/#"], 2.5)
    assert s.status_topic == "factory/bridge/bridge-7/status"
