"""Property tests of HTTP ingest validation (``services.ingest_gateway.validate.check``).

Whatever the body (any bytes, any JSON value, batches that are nearly right), ``check`` either
returns the machines it accepts or raises ``Invalid``; never another exception. Every error
names a place that exists in the body (``batch[1].readings[0].timestamp``; ``body`` for the
body as a whole), and the error list can be sent back as JSON. Valid generated batches are
accepted whole and their values, timestamps and ids come out exactly as they went in; what is
accepted can be packed into broker envelopes (the step after validation).

Fast by default (200 examples per property); ``HYPOTHESIS_PROFILE=thorough`` runs 5,000.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.ingest_gateway.validate import Checked, Invalid, check
from shared.ingest import pack, stored_readings
from shared.lineprotocol import MEASUREMENT, line
from shared.machines import Machine
from shared.readings import BUILTIN_FIELDS, ValidationContext

PROFILE = settings(
    max_examples=5000 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NOW = datetime(2025, 12, 13, 12, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW_NS = (NOW - EPOCH) // timedelta(microseconds=1) * 1000
EXTRA = {"vibration": (0.0, 500.0), "humidity": (0.0, 100.0)}
CTX = ValidationContext(
    extra_fields=EXTRA, max_batch_items=20, max_readings_per_item=20, now_ns=NOW_NS
)
FIELDS = {**BUILTIN_FIELDS, **EXTRA}
INT64 = (-(2**63), 2**63 - 1)
# What pydantic's strip_whitespace removes (Unicode White_Space; str.strip() also takes \x1c-\x1f).
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + ("\u2028\u2029\u202f\u205f\u3000")
)


# --------------------------------------------------------------------------- strategies

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**30])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)

_ZONES = ["Z", "+00:00", "+01:00", "-05:30", "+14:00", "-23:59", "+23:59"]
zones = st.sampled_from(_ZONES)
_TZ = {z: UTC if z == "Z" else datetime.strptime(z, "%z").tzinfo for z in _ZONES}
# Ages from one microsecond to the maximum age less 2 s (truncating to seconds adds up to 1 s).
_AGES = st.integers(min_value=1, max_value=(int(CTX.max_age_s) - 2) * 1_000_000)
_PRECISION = st.sampled_from(["seconds", "milliseconds", "microseconds"])


@st.composite
def valid_timestamps(draw: st.DrawFn) -> tuple[str, int]:
    """A timestamp inside the accepted window (max age .. future skew), ISO text and its ns."""
    instant = NOW - timedelta(microseconds=draw(_AGES))
    zone = draw(zones)
    text = instant.astimezone(_TZ[zone]).isoformat(timespec=draw(_PRECISION))
    if zone == "Z":
        text = text.replace("+00:00", "Z")
    parsed = datetime.fromisoformat(text)
    return text, (parsed - EPOCH) // timedelta(microseconds=1) * 1000


def _in_range(name: str) -> st.SearchStrategy[float | int]:
    low, high = FIELDS[name]
    return st.floats(min_value=low, max_value=high, allow_nan=False) | st.integers(
        min_value=math.ceil(low), max_value=math.floor(high)
    )


# Built once: strategies made inside a composite are validated again on every draw.
sensor_values = st.fixed_dictionaries(
    {}, optional={name: _in_range(name) for name in sorted(FIELDS)}
).filter(bool)


@st.composite
def valid_readings(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    text, ns = draw(valid_timestamps())
    return {"timestamp": text, **draw(sensor_values)}, ns


labels = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40).filter(
    lambda s: s.strip() != ""
)


@st.composite
def valid_items(draw: st.DrawFn) -> tuple[dict[str, Any], list[int]]:
    readings = draw(st.lists(valid_readings(), min_size=1, max_size=3))
    item: dict[str, Any] = {
        "machine_id": str(draw(st.uuids())),
        "readings": [r for r, _ in readings],
    }
    if draw(st.booleans()):
        item["sensor_type"] = draw(labels)
    if draw(st.booleans()):
        item["location"] = draw(labels)
    return item, [ns for _, ns in readings]


gateway_ids = st.text(st.sampled_from("ABCXYZabcxyz0189._:-"), min_size=1, max_size=20)


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[dict[str, Any], list[list[int]]]:
    items = draw(st.lists(valid_items(), min_size=1, max_size=4))
    doc: dict[str, Any] = {"gateway_id": draw(gateway_ids), "batch": [i for i, _ in items]}
    if draw(st.booleans()):
        doc["timestamp"] = draw(valid_timestamps())[0]
    if draw(st.booleans()):
        doc["factory_id"] = draw(gateway_ids)
    return doc, [ns for _, ns in items]


def _spoil(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value, or anything else JSON can hold (wrong type, out of range, junk)."""
    return st.one_of(valid, valid, json_values)


odd_timestamps = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 1),
        max_value=datetime(9999, 12, 31),
        timezones=st.none() | st.sampled_from([UTC, timezone(timedelta(hours=-23, minutes=-59))]),
    ).map(lambda d: d.isoformat()),
    st.text(max_size=30),
    st.sampled_from(
        ["2025-13-45T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59"]
    ),
)


@st.composite
def nearly_valid_requests(draw: st.DrawFn) -> Any:
    """Batches shaped like the real thing with junk at any level, so that validation is
    exercised deep inside, where the paths are long."""
    doc, _ = draw(valid_requests())
    for item in doc["batch"]:
        for reading in item["readings"]:
            for key in list(reading):
                reading[key] = draw(_spoil(st.just(reading[key])))
            if draw(st.integers(0, 4)) == 0:
                reading[draw(st.text(max_size=12))] = draw(json_values)
            if draw(st.integers(0, 4)) == 0:
                reading["timestamp"] = draw(odd_timestamps)
            if draw(st.integers(0, 6)) == 0:
                reading.pop("timestamp", None)
        for key in ("machine_id", "sensor_type", "location", "readings"):
            if key in item and draw(st.integers(0, 4)) == 0:
                item[key] = draw(json_values)
        if draw(st.integers(0, 8)) == 0:
            item.pop("machine_id")
    batch = doc["batch"]
    if draw(st.integers(0, 8)) == 0:
        batch.extend(draw(st.lists(json_values, max_size=3)))
    for key in ("gateway_id", "timestamp", "factory_id"):
        if draw(st.integers(0, 8)) == 0:
            doc[key] = draw(json_values)
    if draw(st.integers(0, 10)) == 0:
        doc["batch"] = draw(json_values)
    return doc


def _encode(draw: st.DrawFn, doc: Any) -> bytes:
    if draw(st.booleans()):
        return json.dumps(doc, allow_nan=True, ensure_ascii=draw(st.booleans())).encode()
    return orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS) if _orjson_safe(doc) else b"{}"


def _orjson_safe(doc: Any) -> bool:
    try:
        orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid body with a few bytes inserted, deleted or replaced."""
    doc, _ = draw(valid_requests())
    raw = bytearray(json.dumps(doc).encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        op = draw(st.integers(0, 2))
        if op == 0:
            raw[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == 1:
            del raw[at : at + draw(st.integers(1, 8))]
        else:
            raw[at : at + 1] = draw(
                st.sampled_from([b"[", b"]", b"{", b"}", b",", b":", b'"', b"\\", b"\x00"])
            )
    return bytes(raw)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        return _encode(draw, draw(json_values))
    if kind == 2:
        return draw(mutated())
    return _encode(draw, draw(nearly_valid_requests()))


# --------------------------------------------------------------------------- helpers

_TOKEN = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


def path_tokens(path: str) -> list[str | int]:
    tokens: list[str | int] = []
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        assert m and m.end() > pos, f"unparseable error path {path!r}"
        tokens.append(int(m.group(1)) if m.group(1) is not None else m.group(2))
        pos = m.end()
    return tokens


def assert_names_a_place(doc: Any, path: str, missing: bool) -> None:
    """``path`` leads through ``doc``; for a "Field required" error the last step may be absent
    (its parent object must exist)."""
    tokens = path_tokens(path)
    assert tokens, "empty error path"
    node = doc
    for i, tok in enumerate(tokens):
        last = i == len(tokens) - 1
        if isinstance(tok, int):
            assert isinstance(node, list) and 0 <= tok < len(node), (path, "index")
            node = node[tok]
        else:
            assert isinstance(node, dict), (path, tok, "not an object")
            if last and missing:
                assert tok not in node, (path, "reported missing but present")
                return
            assert tok in node, (path, tok, "no such key")
            node = node[tok]


def outcome(raw: bytes) -> Checked | Invalid:
    try:
        return check(raw, CTX)
    except Invalid as e:
        return e


def assert_well_formed(raw: bytes, result: Checked | Invalid) -> None:
    try:
        doc = json.loads(raw)
        parsed = True
    except (ValueError, RecursionError):
        doc, parsed = None, False
    if isinstance(result, Invalid):
        assert result.errors, "Invalid without errors"
        errors = [e.as_dict() for e in result.errors]
    else:
        assert parsed, "accepted a body the JSON parser refuses"
        errors = [e for r in result.rejected for e in r.errors]
        batch = doc["batch"]
        indices = sorted([i for i, _ in result.items] + [r.index for r in result.rejected])
        assert indices == list(range(len(batch))), "items and rejections do not cover the batch"
        assert result.items, "a result with nothing accepted should have been Invalid"
        for r in result.rejected:
            assert r.errors and all(e["field"].startswith(f"batch[{r.index}]") for e in r.errors)
    orjson.dumps(errors)  # the answer to the gateway must be encodable
    for err in errors:
        assert set(err) == {"field", "error", "value"}
        assert isinstance(err["field"], str) and isinstance(err["error"], str) and err["error"]
        if err["field"] == "body":
            continue
        assert parsed, f"{err['field']!r} in a body that is not JSON"
        assert_names_a_place(doc, err["field"], missing=err["error"] == "Field required")


def assert_accepted_can_be_published(result: Checked) -> None:
    machine = Machine("m", "n", "L", "S", "active", created_at="", updated_at="")
    for _, item in result.items:
        readings = stored_readings(
            machine=machine,
            factory_id=result.factory_id or "default",
            sensor_type=item.sensor_type,
            location=item.location,
            readings=((r.ts_ns(), r.values()) for r in item.readings),
        )
        for envelope in pack(
            readings, source="http", gateway_id=result.gateway_id, request_id="r", per_message=7
        ):
            envelope.encode()
        for r in readings:
            assert INT64[0] <= r["ts"] <= INT64[1]
            tags = {k: r[k] for k in ("machine_id", "factory_id", "sensor_type", "location")}
            line(MEASUREMENT, tags, r["fields"], r["ts"])


# --------------------------------------------------------------------------- properties


@PROFILE
@given(bodies())
@example(b"")
@example(b"[]")
@example(b"null")
@example(b'"batch"')
@example(b"\xef\xbb\xbf{}")
@example(b"[" * 10_000 + b"]" * 10_000)
@example(b'{"gateway_id": "g", "batch": [{"machine_id": ' + b"9" * 5000 + b"}]}")
@example(b'{"gateway_id": "g", "batch": [1], "batch": [{"machine_id": "x"}]}')
@example(
    b'{"gateway_id": 123456789012345678901234567890, "batch": [{"machine_id": -99999999999999999999}]}'
)
@example(
    b'{"gateway_id":"g","batch":[{"machine_id":"e21c1cfa-4af9-4ccc-a53c-78a967195439",'
    b'"readings":[{"timestamp":"0001-01-01T00:00:00+01:00","temperature":NaN}]}]}'
)
def test_any_body_is_accepted_or_refused_with_field_paths(raw: bytes) -> None:
    result = outcome(raw)
    assert_well_formed(raw, result)
    if isinstance(result, Checked):
        assert_accepted_can_be_published(result)


@PROFILE
@given(valid_requests())
def test_valid_batches_pass_and_round_trip(
    generated: tuple[dict[str, Any], list[list[int]]],
) -> None:
    doc, expected_ns = generated
    raw = json.dumps(doc).encode() if len(expected_ns) % 2 else orjson.dumps(doc)
    result = check(raw, CTX)
    assert result.rejected == []
    assert result.gateway_id == doc["gateway_id"]
    assert result.factory_id == doc.get("factory_id")
    assert [i for i, _ in result.items] == list(range(len(doc["batch"])))
    for (_, item), sent, ns_list in zip(result.items, doc["batch"], expected_ns, strict=True):
        assert item.machine_id == uuid.UUID(sent["machine_id"])
        for key in ("sensor_type", "location"):
            assert getattr(item, key) == (sent[key].strip(WHITE_SPACE) if key in sent else None)
        for reading, raw_reading, ns in zip(item.readings, sent["readings"], ns_list, strict=True):
            assert reading.timestamp == raw_reading["timestamp"]
            assert reading.ts_ns() == ns
            values = {k: v for k, v in raw_reading.items() if k != "timestamp"}
            assert reading.values() == {k: float(v) for k, v in values.items()}
            assert all(type(v) is float for v in reading.values().values())
    assert_accepted_can_be_published(result)


@PROFILE
@given(valid_requests(), st.data())
def test_one_spoiled_machine_is_rejected_alone(
    generated: tuple[dict[str, Any], list[list[int]]], data: st.DataObject
) -> None:
    """A batch with one machine made invalid: the others are still accepted, exactly."""
    doc, _ = generated
    bad = data.draw(st.integers(0, len(doc["batch"]) - 1))
    spoil = data.draw(
        st.sampled_from(
            [
                ("timestamp", "2025-13-45T00:00:00Z"),
                ("timestamp", "2025-12-13T10:00:00"),
                ("temperature", 1e9),
                ("speed", "fast"),
                ("unknown_field", 1.0),
            ]
        )
    )
    which = data.draw(st.integers(0, len(doc["batch"][bad]["readings"]) - 1))
    doc["batch"][bad]["readings"][which][spoil[0]] = spoil[1]
    raw = json.dumps(doc).encode()
    result = outcome(raw)
    assert_well_formed(raw, result)
    if len(doc["batch"]) == 1:
        assert isinstance(result, Invalid)
        return
    assert isinstance(result, Checked)
    assert [r.index for r in result.rejected] == [bad]
    prefix = f"batch[{bad}].readings[{which}]"
    assert all(e["field"].startswith(prefix) for e in result.rejected[0].errors)
    assert [i for i, _ in result.items] == [i for i in range(len(doc["batch"])) if i != bad]
