"""The live hub's fan-out rules, without a broker: filters, gaps, resumption, presence."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from services.query_api.live.hub import FLUSH_SLOTS, LiveHub
from services.query_api.live.settings import LiveSettings
from services.query_api.live.subscriber import Filter, Subscriber
from shared import alert_events
from shared.envelope import Envelope
from shared.settings import AmqpSettings


def hub(**live: int) -> LiveHub:
    """A hub that is never started: without its flush task, every event wakes the stream at
    once (``flush_ms=0``) unless a test asks for coalescing and flushes by hand."""
    live.setdefault("flush_ms", 0)
    return LiveHub(AmqpSettings(), LiveSettings(**live), connection=None, online_threshold_s=60)  # type: ignore[arg-type]


def envelope(machine: str, *temps: float, ts: int | None = None, location: str = "L1") -> bytes:
    base = ts if ts is not None else time.time_ns()
    readings = [
        {
            "machine_id": machine,
            "factory_id": "F1",
            "sensor_type": "Temperature",
            "location": location,
            "ts": base + i,
            "fields": {"temperature": t},
        }
        for i, t in enumerate(temps)
    ]
    return Envelope(source="http", readings=readings, routing_key="r").encode()


def frames(chunk: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in chunk.decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], orjson.loads(lines["data"])))
    return out


async def test_filters_by_machine_and_location_and_type() -> None:
    h = hub()
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    only_a = Subscriber(Filter(machine_ids=frozenset({a}), types=frozenset({"reading"})), 100)
    only_l2 = Subscriber(Filter(locations=frozenset({"L2"})), 100)
    h.subscribe(only_a, None)
    h.subscribe(only_l2, None)
    h.publish(h.events_of("reading.F1." + a, envelope(a, 70.0)))
    h.publish(h.events_of("reading.F1." + b, envelope(b, 71.0, location="L2")))
    got_a = frames(await only_a.take(1) or b"")
    assert [(k, d["machine_id"]) for k, d in got_a] == [("reading", a)]
    assert got_a[0][1]["fields"] == {"temperature": 70.0}
    got_l2 = frames(await only_l2.take(1) or b"")
    # The first reading of a machine also says it is online.
    assert [k for k, _ in got_l2] == ["reading", "status"]
    assert got_l2[1][1]["online"] is True


async def test_a_slow_client_gets_a_gap_and_never_blocks_the_hub() -> None:
    h = hub()
    m = str(uuid.uuid4())
    slow = Subscriber(Filter(types=frozenset({"reading"})), limit=3)
    h.subscribe(slow, None)
    for _ in range(10):
        h.publish(h.events_of("reading.F1." + m, envelope(m, 1.0)))
    got = frames(await slow.take(1) or b"")
    assert [k for k, _ in got] == ["reading"] * 3 + ["gap"]
    assert got[-1][1]["dropped"] == 7
    # Caught up: events flow again, without another gap.
    h.publish(h.events_of("reading.F1." + m, envelope(m, 2.0)))
    assert [k for k, _ in frames(await slow.take(1) or b"")] == ["reading"]


async def test_resume_replays_what_was_missed_or_says_gap() -> None:
    h = hub(replay_events=4)
    m = str(uuid.uuid4())
    events = h.events_of("reading.F1." + m, envelope(m, 1.0, 2.0, 3.0))
    first_id = f"{h.epoch}-{events[0].seq}"
    resumed = Subscriber(Filter(types=frozenset({"reading"})), 100)
    h.subscribe(resumed, first_id)
    assert [d["fields"]["temperature"] for _, d in frames(await resumed.take(1) or b"")] == [
        2.0,
        3.0,
    ]
    for bad in ("otherepoch-1", f"{h.epoch}-x"):
        s = Subscriber(Filter(), 100)
        h.subscribe(s, bad)
        assert [k for k, _ in frames(await s.take(1) or b"")] == ["gap"]
    # Older than what the process still holds: a gap, not a silent partial replay.
    h.events_of("reading.F1." + m, envelope(m, 4.0, 5.0, 6.0, 7.0))
    s = Subscriber(Filter(), 100)
    h.subscribe(s, first_id)
    assert [k for k, _ in frames(await s.take(1) or b"")] == ["gap"]


async def test_offline_once_after_the_threshold_and_alerts_pass_through() -> None:
    h = hub()
    m = str(uuid.uuid4())
    now = time.time_ns()
    h.events_of("reading.F1." + m, envelope(m, 1.0, ts=now))
    assert h.sweep(now + 30 * 10**9) == []
    [offline] = h.sweep(now + 61 * 10**9)
    assert offline.type == "status" and b'"online":false' in offline.frame
    assert h.sweep(now + 62 * 10**9) == []
    body = alert_events.encode("opened", {"id": 1, "machine_id": m, "factory_id": "F1"})
    [ev] = h.events_of(alert_events.alert_routing_key("F1", m), body)
    assert ev.type == "alert" and b'"event":"opened"' in ev.frame


async def test_take_times_out_quietly() -> None:
    sub = Subscriber(Filter(), 10)
    assert await sub.take(0.01) is None


def test_unreadable_alert_event_is_refused() -> None:
    with pytest.raises(ValueError):
        alert_events.decode(b'{"v": 2}')


async def test_a_quiet_stream_is_woken_only_when_its_heartbeat_is_due() -> None:
    """Heartbeats come from the hub's periodic tick, not from a timer per wait: a stream is
    woken (with nothing to send) only once it is due, and events wake it at once."""
    sub = Subscriber(Filter(), 10)
    sub.due = 100.0
    sub.wake_if_due(99.0)
    assert await sub.take(0.01) is None  # not due: still waiting
    sub.wake_if_due(100.0)
    assert await sub.take() == b""  # woken with nothing waiting: the caller sends a heartbeat
    h = hub()
    h.subscribe(sub, None)
    m = str(uuid.uuid4())
    h.publish(h.events_of("reading.F1." + m, envelope(m, 1.0)))
    assert [k for k, _ in frames(await sub.take() or b"")] == ["reading", "status"]


async def test_a_busy_stream_gets_what_came_meanwhile_in_one_chunk_at_the_flush() -> None:
    """Coalescing: a stream that took within the flush period is woken by the hub's flush,
    not by each event, and then gets every event held meanwhile together; a stream quiet for
    a flush period gets its next event at once."""
    h = hub(flush_ms=600)  # far longer than the steps of this test
    m = str(uuid.uuid4())
    sub = Subscriber(Filter(types=frozenset({"reading"})), 100)
    h.subscribe(sub, None)
    h.publish(h.events_of("reading.F1." + m, envelope(m, 1.0)))
    # Quiet until now: at once.
    assert [d["fields"]["temperature"] for _, d in frames(await sub.take(0.5) or b"")] == [1.0]
    for t in (2.0, 3.0, 4.0):
        h.publish(h.events_of("reading.F1." + m, envelope(m, t)))
    assert await sub.take(0.01) is None  # held for the flush
    h.flush()
    got = frames(await sub.take(0.5) or b"")
    assert [d["fields"]["temperature"] for _, d in got] == [2.0, 3.0, 4.0]
    h.flush()  # nothing held: nothing woken
    assert await sub.take(0.01) is None
    sub.taken_at -= 0.6  # a flush period without events
    h.publish(h.events_of("reading.F1." + m, envelope(m, 5.0)))
    assert [d["fields"]["temperature"] for _, d in frames(await sub.take(0.5) or b"")] == [5.0]


async def test_busy_streams_take_turns_at_the_flush_one_slot_a_tick() -> None:
    """Many screens watching the same machines get the same events at the same moment: their
    held events are written slot by slot over the period, not all in one tick, and every
    stream is woken once a period."""
    h = hub(flush_ms=600)
    m = str(uuid.uuid4())
    subs = [Subscriber(Filter(types=frozenset({"reading"})), 100) for _ in range(2 * FLUSH_SLOTS)]
    for sub in subs:
        h.subscribe(sub, None)
    h.publish(h.events_of("reading.F1." + m, envelope(m, 1.0)))
    for sub in subs:  # quiet until now: every one at once
        assert await sub.take(0.5)
    h.publish(h.events_of("reading.F1." + m, envelope(m, 2.0)))
    assert not [sub for sub in subs if await sub.take(0)]  # held for the flush
    woken = []
    for slot in range(FLUSH_SLOTS):
        h.flush(slot)
        chunks = {i: await sub.take(0) for i, sub in enumerate(subs)}
        woken.append([i for i, chunk in chunks.items() if chunk])
        for i in woken[-1]:
            got = frames(chunks[i] or b"")
            assert [d["fields"]["temperature"] for _, d in got] == [2.0]
    assert all(len(w) == 2 for w in woken)
    assert sorted(i for w in woken for i in w) == list(range(2 * FLUSH_SLOTS))
