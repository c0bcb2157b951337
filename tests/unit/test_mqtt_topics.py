"""Telemetry topics: where factory and machine ids sit, and what is not a telemetry topic."""

from __future__ import annotations

import pytest

from shared.mqtt_topics import BadTopic, TopicIds, TopicTemplate, is_status_topic

DEFAULT = TopicTemplate("factory/{factory_id}/machine/{machine_id}/telemetry")
MID = "e21c1cfa-4af9-4ccc-a53c-78a967195439"


def test_default_template_gives_both_ids() -> None:
    assert DEFAULT.parse(f"factory/plant-1/machine/{MID}/telemetry") == TopicIds("plant-1", MID)


def test_topic_round_trips_through_the_template() -> None:
    assert DEFAULT.parse(DEFAULT.topic("P_2:a", MID)) == TopicIds("P_2:a", MID)


@pytest.mark.parametrize(
    "topic",
    [
        f"factory/plant-1/machine/{MID}",  # too short
        f"factory/plant-1/machine/{MID}/telemetry/extra",  # too long
        f"plant/plant-1/machine/{MID}/telemetry",  # wrong literal
        f"factory/plant-1/machines/{MID}/telemetry",
        f"factory/plant-1/machine/{MID}/status",
        f"factory//machine/{MID}/telemetry",  # empty factory
        f"factory/plant.1/machine/{MID}/telemetry",  # '.' would split the routing key
        f"factory/plant 1/machine/{MID}/telemetry",
        f"factory/{'x' * 129}/machine/{MID}/telemetry",
        "factory/plant-1/machine//telemetry",  # empty machine
    ],
)
def test_what_does_not_fit_is_a_bad_topic(topic: str) -> None:
    with pytest.raises(BadTopic):
        DEFAULT.parse(topic)


def test_custom_template_with_ids_in_any_order() -> None:
    t = TopicTemplate("site/{machine_id}/from/{factory_id}")
    assert t.parse(f"site/{MID}/from/f9") == TopicIds("f9", MID)


def test_template_without_ids_is_refused() -> None:
    with pytest.raises(ValueError):
        TopicTemplate("factory/+/machine/{machine_id}/telemetry")


def test_status_topics_are_recognised() -> None:
    assert is_status_topic("factory/bridge/millrace-bridge/status")
    assert not is_status_topic(f"factory/bridge/machine/{MID}/telemetry")
    assert not is_status_topic("factory/x/status")
