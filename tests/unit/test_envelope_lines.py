"""The door's lines in the envelope, merged envelopes (group commit) and how a flush groups."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from services.writer.batch import reading_line
from services.writer.status import newest_per_machine
from shared import broker
from shared.envelope import Envelope
from shared.ingest import pack, stored_readings
from shared.machines import Machine


def readings(machine: str, n: int, factory: str = "f1") -> list[dict[str, Any]]:
    return [
        {
            "machine_id": machine,
            "factory_id": factory,
            "sensor_type": "Temperature",
            "location": "Hall 2, Bay 4",
            "ts": 1_765_620_000_000_000_000 + i,
            "fields": {"temperature": 20.5 + i, "speed": 1400.0},
        }
        for i in range(n)
    ]


def machine(mid: str) -> Machine:
    return Machine(
        id=mid,
        name=mid,
        location="Hall 2, Bay 4",
        sensor_type="Temperature",
        status="active",
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
    )


def test_door_lines_are_the_writers_lines() -> None:
    lines: list[str] = []
    points = [
        (1_765_620_000_000_000_000 + i, {"temperature": 20.5 + i, "speed": 1400.0})
        for i in range(3)
    ]
    out = stored_readings(
        machine=machine("m-1"),
        factory_id="f=1",
        sensor_type=None,
        location=None,
        readings=points,
        lines=lines,
    )
    assert lines == [reading_line(r) for r in out]
    [env] = pack(out, source="http", gateway_id="g", request_id="r", per_message=10, lines=lines)
    decoded = Envelope.decode(env.encode())
    assert decoded.lines == lines and decoded.readings == out


@pytest.mark.parametrize(
    "lines",
    [
        None,
        ["only one line"],  # does not match the two readings
        ["a 1 1", ""],  # an empty line would store nothing for its reading
        ["a 1 1", 7],
        ["a 1 1\nforged 1 1", "b 1 1"],  # a line break would smuggle in another point
    ],
)
def test_lines_that_do_not_match_the_readings_are_ignored(lines: object) -> None:
    doc = {"v": 1, "source": "http", "readings": readings("m", 2), "lines": lines}
    assert Envelope.decode(orjson.dumps(doc)).lines is None


def test_merge_keeps_order_lines_and_where_each_reading_came_from() -> None:
    a = Envelope("http", readings("m1", 2), "reading.f1.m1", "gw-a", "ra")
    a.lines = [reading_line(r) for r in a.readings]
    b = Envelope("http", readings("m2", 3), "reading.f1.m2", "gw-b", "rb")
    b.lines = [reading_line(r) for r in b.readings]
    m = Envelope.merge([a, b], "reading.f1.mixed")
    assert m.readings == a.readings + b.readings
    assert m.lines == a.lines + b.lines
    assert [m.origin(i) for i in range(5)] == [("gw-a", "ra")] * 2 + [("gw-b", "rb")] * 3
    back = Envelope.decode(m.encode(), "reading.f1.mixed")
    assert back.parts == [(2, "gw-a", "ra"), (3, "gw-b", "rb")]
    assert back.origin(4) == ("gw-b", "rb")
    # Without lines on one of them, the merged message has none: the writer builds them all.
    b.lines = None
    assert Envelope.merge([a, b], "reading.f1.mixed").lines is None
    # Parts that do not add up to the readings are not trusted.
    doc = orjson.loads(m.encode())
    doc["parts"] = [[2, "gw-a", "ra"]]
    assert Envelope.decode(orjson.dumps(doc)).origin(4) == ("gw-a", "ra")


def test_a_flush_shares_messages_by_source_and_factory_up_to_the_limit() -> None:
    loop = asyncio.new_event_loop()

    def waiting(env: Envelope, up_to: int = 250, extra: int = 0) -> broker._Waiting:
        envs = [env] + [Envelope("http", readings("x", 1), env.routing_key)] * extra
        return broker._Waiting(envs, up_to, loop.create_future())

    f1 = [waiting(Envelope("http", readings(f"m{i}", 100), f"reading.f1.m{i}")) for i in range(3)]
    f2 = waiting(Envelope("http", readings("n", 100, "f2"), "reading.f2.n"))
    mqtt = waiting(Envelope("mqtt", readings("q", 10), "reading.f1.q"))
    alone = waiting(Envelope("http", readings("z", 5), "reading.f1.z"), up_to=0)
    several = waiting(Envelope("http", readings("s", 5), "reading.f1.s"), extra=1)
    out = broker.group([*f1, f2, mqtt, alone, several])
    sizes = sorted((o.readings, len(o.callers)) for o in out)
    # f1: 200 share one message, the third starts another (250 max); f2, mqtt, the caller that
    # asked for no merging and the two envelopes of one caller each travel alone.
    assert sizes == [(1, 1), (5, 1), (5, 1), (10, 1), (100, 1), (100, 1), (200, 2)]
    shared = next(o for o in out if len(o.callers) == 2)
    assert broker.merged(shared).routing_key == "reading.f1.mixed"
    loop.close()


def test_newest_reading_per_machine() -> None:
    rs = readings("m1", 3) + readings("m2", 2)
    rs.reverse()
    newest = newest_per_machine(rs)
    assert {k: v["ts"] for k, v in newest.items()} == {
        "m1": 1_765_620_000_000_000_002,
        "m2": 1_765_620_000_000_000_001,
    }
