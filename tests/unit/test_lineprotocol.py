from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.writer.batch import LineBuilder, reading_line
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


MALFORMED = [
    {"machine_id": "x"},
    {"machine_id": "m", "factory_id": "f", "sensor_type": "s", "location": "l"},
    {"machine_id": "m", "factory_id": "f", "sensor_type": "s", "location": "l", "fields": [1]},
    {"machine_id": "m", "factory_id": "f", "sensor_type": "s", "location": "l", "fields": {}},
    {
        "machine_id": "m",
        "factory_id": "f",
        "sensor_type": "s",
        "location": "l",
        "fields": {},
        "ts": 1,
    },
    {
        "machine_id": "m",
        "factory_id": "f",
        "sensor_type": "",
        "location": "l",
        "fields": {"a": "x"},
    },
    {
        "machine_id": "m",
        "factory_id": "f",
        "sensor_type": "s",
        "location": "l",
        "fields": {"a": 1e999},
        "ts": 1,
    },
    {
        "machine_id": "m",
        "factory_id": "f",
        "sensor_type": "s",
        "location": "l",
        "fields": {"a": 1},
        "ts": "x",
    },
    {
        "machine_id": ["m"],
        "factory_id": 3,
        "sensor_type": None,
        "location": "a b",
        "fields": {"a b": 1},
        "ts": 2.5,
    },
]


def outcome(write: Callable[[dict[str, object]], str], reading: dict[str, object]) -> object:
    """The line ``write`` makes of ``reading``, or the error it raises (type and message)."""
    try:
        return write(reading)
    except (KeyError, TypeError, ValueError) as e:
        return (type(e), str(e))


@pytest.mark.parametrize("reading", MALFORMED)
def test_line_builder_is_reading_line_even_when_malformed(reading: dict[str, object]) -> None:

    builder = LineBuilder()
    for _ in range(2):  # second time from the series cache
        expected = outcome(reading_line, reading)
        assert outcome(builder.line, reading) == expected


_texts = st.text(alphabet=st.sampled_from(list('ab ,=\\\n"é')), max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "machine_id": st.sampled_from(["m1", "m2", "m 3"]),
                "factory_id": _texts,
                "sensor_type": _texts,
                "location": _texts,
                "ts": st.integers(min_value=-(2**63), max_value=2**63 - 1),
                "fields": st.dictionaries(_texts.filter(bool), st.floats(), max_size=3),
            }
        ),
        max_size=6,
    )
)
def test_line_builder_matches_reading_line(readings: list[dict[str, object]]) -> None:

    builder = LineBuilder(max_series=2)  # also across cache evictions
    for reading in readings:
        expected = outcome(reading_line, reading)
        assert outcome(builder.line, reading) == expected
