from __future__ import annotations

import uuid

import orjson
import pytest

from services.ingest_gateway.validate import Invalid, check
from shared.readings import ValidationContext

MACHINE = "e21c1cfa-4af9-4ccc-a53c-78a967195439"


# "Now" for these tests: the contract's example batch is two hours old, forever.
NOW_NS = 1_765_627_200_000_000_000  # 2025-12-13T12:00:00Z


def ctx(**kw: object) -> ValidationContext:
    return ValidationContext(now_ns=NOW_NS, **kw)  # type: ignore[arg-type]


def body(*items: dict[str, object], **top: object) -> bytes:
    doc = {"gateway_id": "GW-01", "timestamp": "2025-12-13T10:00:00Z", "batch": list(items)}
    doc.update(top)
    return orjson.dumps(doc)


def item(machine: str = MACHINE, **reading: object) -> dict[str, object]:
    r = {"timestamp": "2025-12-13T10:00:00Z", "temperature": 60.5, "pressure": 102.0, "speed": 1400}
    r.update(reading)
    return {
        "machine_id": machine,
        "sensor_type": "Temperature",
        "location": "Floor 1",
        "readings": [r],
    }


def errors_of(raw: bytes, **kw: object) -> list[dict[str, object]]:
    with pytest.raises(Invalid) as exc:
        check(raw, ctx(**kw))
    return [e.as_dict() for e in exc.value.errors]


def test_contract_example_is_valid() -> None:
    checked = check(body(item()), ctx())
    assert checked.gateway_id == "GW-01"
    [(index, batch)] = checked.items
    reading = batch.readings[0]
    assert index == 0
    assert reading.values() == {"temperature": 60.5, "pressure": 102.0, "speed": 1400.0}
    assert reading.ts_ns() == 1_765_620_000_000_000_000


def test_bad_timestamp_names_exact_path() -> None:
    errs = errors_of(body(item(timestamp="2025-13-45")))
    assert errs == [
        {
            "field": "batch[0].readings[0].timestamp",
            "error": "Invalid ISO 8601 format",
            "value": "2025-13-45",
        }
    ]


@pytest.mark.parametrize("ts", ["2025-12-13T10:00:00", "2025-12-13", "1765620000"])
def test_timestamp_needs_zone_and_iso(ts: str) -> None:
    [err] = errors_of(body(item(timestamp=ts)))
    assert err["field"] == "batch[0].readings[0].timestamp"


def test_offset_zones_are_accepted_and_normalised() -> None:
    checked = check(body(item(timestamp="2025-12-13T11:00:00+01:00")), ctx())
    assert checked.items[0][1].readings[0].ts_ns() == 1_765_620_000_000_000_000


def test_reading_needs_a_value() -> None:
    raw = body({"machine_id": MACHINE, "readings": [{"timestamp": "2025-12-13T10:00:00Z"}]})
    [err] = errors_of(raw)
    assert err["field"] == "batch[0].readings[0]"
    assert "at least one sensor value" in str(err["error"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 5000.0),
        ("pressure", -1.0),
        ("speed", "fast"),
        ("speed", True),
        ("temperature", None),
    ],
)
def test_implausible_values(field: str, value: object) -> None:
    reading = {"timestamp": "2025-12-13T10:00:00Z", "pressure": 100.0, field: value}
    if value is None:
        reading = {"timestamp": "2025-12-13T10:00:00Z", field: value}
    raw = body({"machine_id": MACHINE, "readings": [reading]})
    errs = errors_of(raw)
    assert errs[0]["field"].startswith("batch[0].readings[0]")


def test_non_finite_numbers_refused() -> None:
    # NaN is not JSON, but the parser takes it: the reading must still be refused, by name.
    for literal in (b"NaN", b"1e999", b"-Infinity"):
        raw = body(item()).replace(b"60.5", literal)
        [err] = errors_of(raw)
        assert err["field"] == "batch[0].readings[0].temperature", literal
        assert err["error"] == "Value must be a finite number", literal


def test_unknown_field_refused_declared_field_accepted() -> None:
    errs = errors_of(body(item(vibration=3.0)))
    assert "Unknown sensor field 'vibration'" in str(errs[0]["error"])
    checked = check(body(item(vibration=3.0)), ctx(extra_fields={"vibration": (0.0, 50.0)}))
    assert checked.items[0][1].readings[0].values()["vibration"] == 3.0
    errs = errors_of(body(item(vibration=99.0)), extra_fields={"vibration": (0.0, 50.0)})
    assert errs[0]["field"] == "batch[0].readings[0]"


def test_partial_batch_keeps_valid_machines() -> None:
    other = str(uuid.uuid4())
    checked = check(body(item(), item(machine=other, timestamp="nope"), item()), ctx())
    assert [i for i, _ in checked.items] == [0, 2]
    [rej] = checked.rejected
    assert rej.index == 1 and rej.machine_id == other
    assert rej.errors[0]["field"] == "batch[1].readings[0].timestamp"


def test_top_level_errors_refuse_everything() -> None:
    errs = errors_of(body(item(), gateway_id=""))
    assert errs[0]["field"] == "gateway_id"
    errs = errors_of(orjson.dumps({"gateway_id": "GW", "batch": []}))
    assert errs[0]["field"] == "batch"
    errs = errors_of(b'{"gateway_id": ')
    assert errs[0]["field"] == "body"


def test_batch_and_reading_limits() -> None:
    errs = errors_of(body(item(), item(), item()), max_batch_items=2)
    assert errs[0]["field"] == "batch" and "At most 2" in str(errs[0]["error"])
    many = {
        "machine_id": MACHINE,
        "readings": [{"timestamp": "2025-12-13T10:00:00Z", "speed": 1.0}] * 3,
    }
    errs = errors_of(body(many), max_readings_per_item=2)
    assert errs[0]["field"] == "batch[0].readings"


def test_future_timestamps_refused() -> None:
    errs = errors_of(body(item(timestamp="2999-01-01T00:00:00Z")))
    assert "future" in str(errs[0]["error"])


def test_machine_id_must_be_uuid() -> None:
    errs = errors_of(body(item(machine="machine-7")))
    [err] = errs
    assert (err["field"], err["value"]) == ("batch[0].machine_id", "machine-7")
    assert "valid UUID" in str(err["error"])


@pytest.mark.parametrize(
    "ts", ["0001-01-01T00:00:00Z", "1600-01-01T00:00:00+00:00", "2024-12-01T00:00:00Z"]
)
def test_timestamps_older_than_retention_refused(ts: str) -> None:
    errs = errors_of(body(item(timestamp=ts)))
    assert errs[0]["field"] == "batch[0].readings[0].timestamp"
    assert "older than the raw data retention" in str(errs[0]["error"])
