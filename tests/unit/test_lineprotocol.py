from __future__ import annotations

import pytest

from services.writer.batch import reading_line
from shared.lineprotocol import escape_tag, format_float, line


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("Building A, Zone 3", r"Building\ A\,\ Zone\ 3"),
        ("a=b", r"a\=b"),
        ('say "hi"', r'say\ "hi"'),
        ("back\\slash", "back\\\\slash"),
        ("plain", "plain"),
    ],
)
def test_tag_escaping(raw: str, escaped: str) -> None:
    assert escape_tag(raw) == escaped


def test_line_sorts_tags_and_writes_floats() -> None:
    out = line(
        "sensor_readings",
        {"machine_id": "m1", "location": "Floor 1", "factory_id": "f", "sensor_type": ""},
        {"speed": 1400, "temperature": 60.5},
        1_765_620_000_000_000_000,
    )
    assert out == (
        r"sensor_readings,factory_id=f,location=Floor\ 1,machine_id=m1 "
        "speed=1400.0,temperature=60.5 1765620000000000000"
    )


def test_non_finite_refused() -> None:
    with pytest.raises(ValueError):
        format_float(float("nan"))
    with pytest.raises(ValueError):
        line("m", {}, {}, 1)


def test_reading_line_from_envelope_reading() -> None:
    reading = {
        "machine_id": "e21c1cfa-4af9-4ccc-a53c-78a967195439",
        "factory_id": "plant=1",
        "sensor_type": "Temperature",
        "location": "Building A, Zone 3",
        "ts": 5,
        "fields": {"temperature": 1e-7},
    }
    assert reading_line(reading) == (
        r"sensor_readings,factory_id=plant\=1,location=Building\ A\,\ Zone\ 3,"
        "machine_id=e21c1cfa-4af9-4ccc-a53c-78a967195439,sensor_type=Temperature "
        "temperature=1e-07 5"
    )
    with pytest.raises(KeyError):
        reading_line({"machine_id": "x"})
