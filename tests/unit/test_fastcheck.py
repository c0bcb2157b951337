"""The fast path of ingest validation (``shared.fastcheck``, ``validate.accept``) against the
reference models (``validate.check``).

Whatever the body, the fast path either declines (None: the models decide) or returns exactly
what the models accept — same machines, same timestamps in ns, same values, same types, same
order. Bodies are generated near the valid ones, where the two could disagree: numbers as ints,
floats, bools, strings, out of range or non-finite; timestamps in many ISO forms, with and
without zones; ids and labels in unusual spellings and with every kind of whitespace; extra,
reserved and repeated keys. ``HYPOTHESIS_PROFILE=thorough`` runs 5,000 examples per property.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.ingest_gateway.validate import Invalid, _fast, accept, check
from shared.readings import ValidationContext

PROFILE = settings(
    max_examples=5000 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NOW_NS = 1_765_627_200_000_000_000  # 2025-12-13T12:00:00Z
CTX = ValidationContext(
    extra_fields={"vibration": (0.0, 500.0), "humidity": (-1e308, 1e308)},
    max_batch_items=5,
    max_readings_per_item=4,
    now_ns=NOW_NS,
)
MACHINE = "e21c1cfa-4af9-4ccc-a53c-78a967195439"

# Characters that are whitespace to Python, to Rust (pydantic strips with it), or to neither
# but look like it.
SPACES = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()] + [
    "\u200b",
    "\ufeff",
    "\u180e",
]
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([0, 1, -1, 1400, 3000, 3000.0000001, -273.15, -273.16, 1e6, 1e308, 10**400]),
    st.booleans(),
    st.none(),
    st.sampled_from(["60.5", "", [], {}]),
)
timestamps = st.one_of(
    st.sampled_from(
        [
            "2025-12-13T10:00:00Z",
            "2025-12-13T10:00:00.123456Z",
            "2025-12-13T10:00:00.123456789Z",
            "2025-12-13T10:00:00.1+01:00",
            "2025-12-13T11:59:59-00:30",
            "2025-12-13 10:00:00Z",
            "2025-12-13T10:00Z",
            "2025-12-13T10Z",
            "20251213T100000Z",
            "2025-W50-6T10:00:00Z",
            "2025-347T10:00:00Z",
            "2025-12-13T10:00:00",
            "2025-12-13",
            "2025-12-13T10:00:00+24:00",
            "2025-12-13T12:05:01Z",
            "2024-12-13T12:00:00Z",
            "2025-12-13T10:00:00z",
            " 2025-12-13T10:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2025-13-45T10:00:00Z",
            "2025-12-13T23:59:60Z",
        ]
    ),
    st.integers(min_value=NOW_NS - 400 * 86_400 * 10**9, max_value=NOW_NS + 600 * 10**9).map(
        lambda ns: fastcheck_iso(ns)
    ),
    st.integers(),
    st.none(),
)
ids = st.one_of(
    st.just(MACHINE),
    st.uuids().map(str),
    st.sampled_from(
        [
            MACHINE.upper(),
            MACHINE.replace("-", ""),
            "{" + MACHINE + "}",
            "urn:uuid:" + MACHINE,
            MACHINE + " ",
            "00000000-0000-0000-0000-000000000000",
            "not-a-uuid",
            "",
        ]
    ),
    st.integers(),
)
labels = st.one_of(
    st.none(),
    st.text(max_size=4),
    st.tuples(st.sampled_from(SPACES), st.sampled_from(["Floor 1", "x"]), st.booleans()).map(
        lambda t: t[0] + t[1] if t[2] else t[1] + t[0]
    ),
    st.sampled_from(["Floor 1", "x" * 200, "x" * 201, "", "  ", 5]),
)
gateways = st.one_of(
    st.sampled_from(["GW-01", "gw.1:a_b", "x" * 128, "x" * 129, " GW-01", "GW 01", "", "GW-01\n"]),
    st.none(),
    st.integers(),
)


def fastcheck_iso(ns: int) -> str:
    from datetime import UTC, datetime

    return (
        datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        + f".{ns % 10**9 // 1000:06d}Z"
    )


def mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
    """Usually a valid value, one time in eight an odd one: whole bodies stay often valid."""
    return draw(odd) if draw(st.integers(0, 7)) == 0 else draw(usual)


valid_numbers = st.one_of(
    st.floats(min_value=0, max_value=500), st.integers(min_value=0, max_value=500)
)
valid_timestamps = st.integers(
    min_value=NOW_NS - 360 * 86_400 * 10**9, max_value=NOW_NS + 290 * 10**9
).map(lambda ns: fastcheck_iso(ns))


@st.composite
def readings(draw: st.DrawFn) -> dict[str, Any]:
    r: dict[str, Any] = {}
    if draw(st.integers(0, 15)) > 0:
        r["timestamp"] = mostly(draw, valid_timestamps, timestamps)
    names = ["temperature", "pressure", "speed", "vibration", "humidity"]
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True))
    if draw(st.integers(0, 15)) == 0:
        chosen.append(draw(st.sampled_from(["noise", "location", "machine_id", "timestamp"])))
    for name in chosen:
        r[name] = mostly(draw, valid_numbers, numbers)
    if draw(st.integers(0, 3)) == 0:
        r = dict(reversed(list(r.items())))
    return r


@st.composite
def items(draw: st.DrawFn) -> dict[str, Any]:
    item: dict[str, Any] = {"machine_id": mostly(draw, st.uuids().map(str), ids)}
    if draw(st.booleans()):
        item["sensor_type"] = mostly(draw, st.sampled_from(["Temperature", None]), labels)
    if draw(st.booleans()):
        item["location"] = mostly(draw, st.sampled_from(["Floor 1", None]), labels)
    item["readings"] = draw(st.lists(readings(), min_size=1, max_size=4))
    if draw(st.integers(0, 15)) == 0:
        item["readings"] = draw(st.lists(readings(), min_size=0, max_size=6))
    if draw(st.integers(0, 9)) == 0:
        item["comment"] = "ignored"
    return item


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    doc: dict[str, Any] = {}
    if draw(st.integers(0, 15)) > 0:
        doc["gateway_id"] = mostly(draw, st.just("GW-01"), gateways)
    if draw(st.booleans()):
        doc["factory_id"] = mostly(draw, st.sampled_from(["plant-1", None]), gateways)
    if draw(st.booleans()):
        doc["timestamp"] = mostly(draw, valid_timestamps, timestamps)
    doc["batch"] = draw(st.lists(items(), min_size=1, max_size=3))
    if draw(st.integers(0, 15)) == 0:
        doc["batch"] = draw(st.lists(items(), min_size=0, max_size=6))
    text = json.dumps(doc, allow_nan=True)
    if draw(st.integers(0, 9)) == 0:
        # A repeated key: the parser keeps the last one, in the models as here.
        text = text.replace('"temperature": ', '"temperature": 1e9, "temperature": ', 1)
    return text.encode()


def reference(body: bytes) -> Any:
    try:
        checked = check(body, CTX)
    except Invalid:
        return "invalid"
    return (
        checked.gateway_id,
        checked.factory_id,
        [
            (
                i,
                str(b.machine_id),
                b.sensor_type,
                b.location,
                [(r.ts_ns(), r.values()) for r in b.readings],
            )
            for i, b in checked.items
        ],
        [r.as_dict() for r in checked.rejected],
    )


def typed(x: Any) -> Any:
    """Values with their types, so that 1 == 1.0 does not hide a difference."""
    if isinstance(x, dict):
        return [(k, typed(v)) for k, v in x.items()]
    if isinstance(x, list | tuple):
        return [typed(v) for v in x]
    return (type(x).__name__, x)


def assert_same_as_models(body: bytes) -> bool:
    fast = _fast(body, CTX)
    if fast is None:
        return False
    ref = reference(body)
    assert ref != "invalid", "the fast path accepted what the models refuse"
    got = (
        fast.gateway_id,
        fast.factory_id,
        [(i, it.machine_id, it.sensor_type, it.location, it.points) for i, it in fast.items],
        [],
    )
    assert typed(got) == typed(ref)
    return True


@PROFILE
@given(bodies())
@example(
    orjson.dumps(
        {
            "gateway_id": "GW-01",
            "batch": [
                {
                    "machine_id": MACHINE,
                    "readings": [{"timestamp": "2025-12-13T10:00:00Z", "temperature": 60}],
                }
            ],
        }
    )
)
def test_fast_path_accepts_only_what_the_models_accept_and_gives_the_same(body: bytes) -> None:
    assert_same_as_models(body)


@PROFILE
@given(st.lists(st.sampled_from(SPACES), min_size=1, max_size=2), st.booleans())
def test_labels_the_models_would_strip_are_left_to_them(spaces: list[str], front: bool) -> None:
    value = "".join(spaces) + "Floor 1" if front else "Floor 1" + "".join(spaces)
    item = {
        "machine_id": MACHINE,
        "location": value,
        "readings": [{"timestamp": "2025-12-13T10:00:00Z", "speed": 1}],
    }
    body = orjson.dumps({"gateway_id": "GW-01", "batch": [item]})
    assert_same_as_models(body)


def test_the_common_batch_takes_the_fast_path() -> None:
    batch = [
        {
            "machine_id": str(uuid.uuid4()),
            "sensor_type": "Temperature",
            "readings": [
                {"timestamp": "2025-12-13T10:00:00.5Z", "temperature": 60.5, "speed": 1400},
                {"timestamp": "2025-12-13T11:00:00+01:00", "pressure": 101.3, "vibration": 2},
            ],
        }
        for _ in range(5)
    ]
    body = orjson.dumps({"gateway_id": "GW-01", "factory_id": "plant-1", "batch": batch})
    assert assert_same_as_models(body)
    accepted = accept(body, CTX)
    assert accepted.items[0][1].points[1] == (
        1_765_620_000_000_000_000,
        {"pressure": 101.3, "vibration": 2.0},
    )


def test_anything_else_gets_the_models_answer() -> None:
    body = orjson.dumps(
        {
            "gateway_id": "GW-01",
            "batch": [
                {"machine_id": MACHINE, "readings": [{"timestamp": "2025-12-13T10:00:00Z"}]},
                {
                    "machine_id": MACHINE.upper(),
                    "readings": [{"timestamp": "2025-12-13T10:00:00Z", "speed": 1}],
                },
            ],
        }
    )
    assert _fast(body, CTX) is None
    accepted = accept(body, CTX)
    assert [i for i, _ in accepted.items] == [1]
    assert accepted.items[0][1].machine_id == MACHINE
    assert accepted.rejected[0].index == 0


PARSERS_DIFFER = [
    (b"", b'"temperature": NaN'),  # the models' parser reads NaN, orjson refuses it
    (b"", b'"speed": 100000000000000000000000'),  # beyond 64 bits
    (b'"location": "Hall \\ud800", ', b'"speed": 1'),  # a lone surrogate
]


@pytest.mark.parametrize(("item", "values"), PARSERS_DIFFER)
def test_what_orjson_cannot_read_is_left_to_the_models(item: bytes, values: bytes) -> None:
    body = (
        b'{"gateway_id": "GW-01", "batch": [{'
        + item
        + b'"machine_id": "'
        + MACHINE.encode()
        + b'", "readings": [{"timestamp": "2025-12-13T10:00:00Z", '
        + values
        + b"}]}]}"
    )
    assert _fast(body, CTX) is None
    try:
        got = accept(body, CTX)
    except Invalid:
        assert reference(body) == "invalid"
    else:
        assert [(i, it.location, it.points) for i, it in got.items] == [
            (i, loc, pts) for i, _, _, loc, pts in reference(body)[2]
        ]
