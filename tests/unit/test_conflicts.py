from __future__ import annotations

import logging

import pytest

from services.writer.conflicts import ConflictDetector


def reading(ts: int, temperature: float, machine: str = "m1") -> dict[str, object]:
    return {
        "machine_id": machine,
        "factory_id": "f",
        "sensor_type": "T",
        "location": "L",
        "ts": ts,
        "fields": {"temperature": temperature},
    }


def test_redelivery_is_a_duplicate_different_values_a_conflict(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = ConflictDetector(window=100)
    assert d.observe([reading(1, 20.0), reading(2, 21.0)]) == (0, 0)
    assert d.observe([reading(1, 20.0)]) == (1, 0)
    with caplog.at_level(logging.WARNING):
        assert d.observe([reading(2, 99.0), reading(2, 99.0, machine="m2")]) == (0, 1)
    assert "conflicting re-write" in caplog.text and "m1" in caplog.text


def test_window_is_bounded_oldest_forgotten() -> None:
    d = ConflictDetector(window=3)
    d.observe([reading(i, 1.0) for i in range(5)])
    assert len(d._seen) == 3
    assert d.observe([reading(0, 2.0)]) == (0, 0)  # forgotten: not detectable any more
    assert d.observe([reading(4, 2.0)]) == (0, 1)
