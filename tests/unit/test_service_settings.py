"""Each service's own options sit in a nested model with its prefix (``settings.writer...``)
yet keep the environment names the README documents; a refused value is reported by its name."""

from __future__ import annotations

import importlib

import pytest

from shared.service.entry import load_settings

# service, environment variable, value, where the option lands, expected
MAPPED = [
    ("alerter", "ALERTER_PREFETCH", "7", ("alerter", "prefetch"), 7),
    (
        "alerter",
        "ALERTER_MQTT_TOPIC",
        "plant/alerts",
        ("alerter", "mqtt_topic_prefix"),
        "plant/alerts",
    ),
    ("auth", "AUTH_GATEWAY_TTL_S", "60", ("auth", "gateway_ttl_s"), 60),
    ("auth", "INGEST_DEFAULT_FACTORY_ID", "plant-2", ("auth", "default_factory_id"), "plant-2"),
    ("query_api", "QUERY_CACHE_TTL_S", "0", ("query", "cache_ttl_s"), 0),
    ("ingest_gateway", "INGEST_GATEWAY_WORKERS", "2", ("gateway", "workers"), 2),
    ("ingest_gateway", "INGEST_RETRY_AFTER_S", "9", ("gateway", "retry_after_s"), 9),
    ("writer", "WRITER_BATCH_POINTS", "7", ("writer", "batch_points"), 7),
    ("mqtt_bridge", "MQTT_BRIDGE_MAX_INFLIGHT", "7", ("bridge", "max_inflight"), 7),
    ("mqtt_bridge", "MQTT_BRIDGE_GROUP_WAIT_MS", "2.5", ("bridge", "group_wait_ms"), 2.5),
]

# service, environment variable, a value it refuses
REFUSED = [
    ("alerter", "ALERTER_QUEUE_MAX_LENGTH", "0"),
    ("auth", "AUTH_ACCESS_TTL_S", "soon"),
    ("query_api", "QUERY_ONLINE_THRESHOLD_S", "0"),
    ("ingest_gateway", "INGEST_GATEWAY_WORKERS", "65"),
    ("writer", "WRITER_BATCH_POINTS", "many"),
    ("mqtt_bridge", "MQTT_BRIDGE_MAX_INFLIGHT", "0"),
]


def settings_of(service: str) -> type:
    cls: type = importlib.import_module(f"services.{service}.settings").Settings
    return cls


@pytest.mark.parametrize(("service", "name", "value", "path", "expected"), MAPPED)
def test_the_environment_name_reaches_the_nested_option(
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    name: str,
    value: str,
    path: tuple[str, str],
    expected: object,
) -> None:
    monkeypatch.setenv(name, value)
    group, option = path
    assert getattr(getattr(settings_of(service)(), group), option) == expected


@pytest.mark.parametrize(("service", "name", "value"), REFUSED)
def test_a_refused_value_is_named_by_its_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    service: str,
    name: str,
    value: str,
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        load_settings(settings_of(service))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: configuration refused: {name}: "), err


def test_a_shared_dependency_is_named_by_its_variable_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMQP_HEARTBEAT_S", "often")
    with pytest.raises(SystemExit):
        load_settings(settings_of("alerter"))
    assert capsys.readouterr().err.startswith("error: configuration refused: AMQP_HEARTBEAT_S: ")


def test_an_option_off_the_prefix_is_read_by_its_own_name_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # INGEST_RETRY_AFTER_S, not INGEST_GATEWAY_RETRY_AFTER_S (the prefix + the field name).
    monkeypatch.delenv("INGEST_RETRY_AFTER_S", raising=False)
    monkeypatch.setenv("INGEST_GATEWAY_RETRY_AFTER_S", "9")
    assert settings_of("ingest_gateway")().gateway.retry_after_s == 5
