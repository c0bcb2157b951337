from __future__ import annotations

import logging

import pytest

from services.writer.batch import reading_line
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


def observe(d: ConflictDetector, readings: list[dict[str, object]]) -> tuple[int, int]:
    return d.observe(readings, [reading_line(r) for r in readings])


def test_redelivery_is_a_duplicate_different_values_a_conflict(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = ConflictDetector(window=100)
    assert observe(d, [reading(1, 20.0), reading(2, 21.0)]) == (0, 0)
    assert observe(d, [reading(1, 20.0)]) == (1, 0)
    with caplog.at_level(logging.WARNING):
        assert observe(d, [reading(2, 99.0), reading(2, 99.0, machine="m2")]) == (0, 1)
    assert "conflicting re-write" in caplog.text and "m1" in caplog.text


def test_the_same_key_twice_in_one_batch() -> None:
    d = ConflictDetector(window=100)
    assert observe(d, [reading(1, 20.0), reading(1, 20.0), reading(1, 30.0)]) == (1, 1)
    assert observe(d, [reading(1, 30.0)]) == (1, 0)


def test_window_is_bounded_oldest_forgotten() -> None:
    d = ConflictDetector(window=4)  # two generations of 2 keys: remembers the last 2 to 4
    for i in range(5):
        observe(d, [reading(i, 1.0)])
    assert len(d) == 3  # 2 and 3 (older generation), 4
    assert observe(d, [reading(0, 2.0)]) == (0, 0)  # forgotten: not detectable any more
    assert observe(d, [reading(4, 2.0)]) == (0, 1)
    for i in range(100):
        observe(d, [reading(100 + i, 1.0)])
        assert 2 <= len(d) <= 4
    big = [reading(1000 + i, 1.0) for i in range(7)]
    observe(d, big)
    assert len(d) >= 7  # a batch larger than half the window is kept whole...
    observe(d, [reading(2000, 1.0)])
    observe(d, [reading(2001, 1.0)])
    assert len(d) == 2  # ...until the next generation replaces it
