"""The live hub at scale: an event meets only the clients that may want it, and an event no
client wants is never encoded."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import orjson

from services.query_api.live.events import LiveEvent
from services.query_api.live.hub import LINGER_S, MAX_NEEDLES, LiveHub
from services.query_api.live.settings import LiveSettings
from services.query_api.live.subscriber import Filter, Subscriber
from shared.envelope import Envelope
from shared.settings import AmqpSettings


def hub() -> LiveHub:
    return LiveHub(AmqpSettings(), LiveSettings(), connection=None, online_threshold_s=60)  # type: ignore[arg-type]


def readings(pairs: list[tuple[str, str]], step: float = 0.0) -> list[dict[str, Any]]:
    """A temperature reading of each (machine, factory), a nanosecond apart: 20.0, then
    ``step`` more each."""
    now = time.time_ns()
    return [
        {
            "machine_id": m,
            "factory_id": f,
            "sensor_type": "Temperature",
            "location": "L1",
            "ts": now + i,
            "fields": {"temperature": 20.0 + step * i},
        }
        for i, (m, f) in enumerate(pairs)
    ]


def body(machine: str, factory: str, n: int = 1) -> bytes:
    """A message of ``n`` readings of one machine."""
    rs = readings([(machine, factory)] * n, step=1.0)
    return Envelope(source="http", readings=rs, routing_key="r").encode()


class Counting(Subscriber):
    """A subscriber that counts how often the hub offered it an event."""

    def __init__(self, filt: Filter) -> None:
        super().__init__(filt, 10_000)
        self.offered = 0

    def offer(self, ev: LiveEvent) -> bool:
        self.offered += 1
        return super().offer(ev)


def test_clients_of_other_factories_are_never_offered_the_event() -> None:
    h = hub()
    others = [Counting(Filter(factory_ids=frozenset({f"F{i}"}))) for i in range(2, 502)]
    for s in others:
        h.subscribe(s, None)
    mine = Counting(Filter(factory_ids=frozenset({"F1"}), types=frozenset({"reading"})))
    h.subscribe(mine, None)
    m = str(uuid.uuid4())
    h.publish(h.events_of("reading.F1." + m, body(m, "F1", 100)))
    assert mine.offered == 101  # 100 readings and the machine's "online" status
    assert sum(s.offered for s in others) == 0


def test_machine_clients_are_filed_by_machine_and_still_filtered_by_factory() -> None:
    h = hub()
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    watch_a = Counting(Filter(machine_ids=frozenset({a}), factory_ids=frozenset({"F1"})))
    everything = Counting(Filter())
    h.subscribe(watch_a, None)
    h.subscribe(everything, None)
    h.publish(h.events_of("reading.F1." + b, body(b, "F1")))
    assert watch_a.offered == 0
    assert everything.offered == 2
    # Machine a reported under another factory: offered (filed by machine) but not kept.
    h.publish(h.events_of("reading.F2." + a, body(a, "F2")))
    assert watch_a.offered == 2
    assert watch_a._pending == []
    h.publish(h.events_of("reading.F1." + a, body(a, "F1")))
    assert len(watch_a._pending) == 1


def test_unsubscribed_clients_leave_the_index() -> None:
    h = hub()
    subs = [Counting(Filter(factory_ids=frozenset({"F1", "F2"}))) for _ in range(3)]
    anywhere = Counting(Filter())
    for s in [*subs, anywhere]:
        h.subscribe(s, None)
    for s in [*subs, anywhere]:
        h.unsubscribe(s)
    h.unsubscribe(anywhere)  # twice: harmless
    m = str(uuid.uuid4())
    h.publish(h.events_of("reading.F1." + m, body(m, "F1")))
    assert sum(s.offered for s in [*subs, anywhere]) == 0
    assert h.client_count == 0
    assert (h._by_factory, h._by_machine, h._anywhere) == ({}, {}, set())


def test_an_event_is_encoded_once_and_only_when_wanted() -> None:
    h = hub()
    m = str(uuid.uuid4())
    unwanted = h.events_of("reading.F9." + m, body(m, "F9"))
    h.publish(unwanted)
    assert all(ev._frame is None for ev in unwanted)  # nobody listens to F9
    subs = [Subscriber(Filter(factory_ids=frozenset({"F1"})), 10) for _ in range(3)]
    for s in subs:
        h.subscribe(s, None)
    [reading] = h.events_of("reading.F1." + m, body(m, "F1"))  # online already: no status
    h.publish([reading])
    frames = [s._pending[0] for s in subs]
    assert frames[0] is frames[1] is frames[2]  # the same bytes object for every client
    data = orjson.loads(frames[0].split(b"data: ", 1)[1])
    assert data["machine_id"] == m and data["fields"] == {"temperature": 20.0}
    # Resuming replays an event nobody wanted when it came: encoded then.
    late = Subscriber(Filter(), 100)
    h.subscribe(late, f"{h.epoch}-{unwanted[0].seq - 1}")
    assert late._pending[0].startswith(f"id: {h.epoch}-{unwanted[0].seq}\n".encode())


# -- messages nobody watches are acknowledged undecoded ---------------------------------------


class Message:
    """What the hub reads of an AMQP delivery."""

    def __init__(self, routing_key: str, body: bytes) -> None:
        self.routing_key, self.body = routing_key, body
        self.acked = False

    async def ack(self) -> None:
        self.acked = True


def mixed(pairs: list[tuple[str, str]]) -> bytes:
    """One message holding a reading of each (machine, factory), as a door packs them, with
    the lines the door renders."""
    lines = [f"sensor_readings,factory_id={f},machine_id={m} temperature=20.0 1" for m, f in pairs]
    return Envelope(source="http", readings=readings(pairs), routing_key="r", lines=lines).encode()


async def feed(h: LiveHub, key: str, message_body: bytes) -> Message:
    message = Message(key, message_body)
    await h._on_message(message)  # type: ignore[arg-type]
    assert message.acked
    return message


async def test_a_message_naming_no_watched_id_is_skipped_and_any_other_is_decoded() -> None:
    h = hub()
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    assert h.skippable(body(a, "F1"))  # no client at all
    f1 = Counting(Filter(factory_ids=frozenset({"F1"})))
    watch_c = Counting(Filter(machine_ids=frozenset({c})))
    h.subscribe(f1, None)
    h.subscribe(watch_c, None)
    assert h.skippable(body(a, "F2"))
    assert h.skippable(mixed([(a, "F2"), (b, "F3")]))
    # One reading of the watched factory among others; the watched machine in any factory.
    assert not h.skippable(mixed([(a, "F2"), (b, "F1"), (a, "F3")]))
    assert not h.skippable(mixed([(c, "F9")]))
    # Ids that only appear inside the lines (tags, unquoted) do not count as readings of them.
    assert h.skippable(Envelope("http", [], "r", lines=["x,factory_id=F1 t=1.0 1"]).encode())
    await feed(h, "reading.F2.mixed", mixed([(a, "F2"), (b, "F1")]))
    assert f1.offered == 2 and watch_c.offered == 0  # the F1 reading and its machine's status
    await feed(h, "reading.F2." + a, body(a, "F2"))
    assert f1.offered == 2
    # A client anywhere needs every message; so does a client of too many ids to search for.
    anywhere = Counting(Filter(locations=frozenset({"L1"})))
    h.subscribe(anywhere, None)
    assert not h.skippable(body(a, "F2"))
    h.unsubscribe(anywhere)
    many = Counting(Filter(factory_ids=frozenset(f"G{i}" for i in range(MAX_NEEDLES + 1))))
    h.subscribe(many, None)
    assert not h.skippable(body(a, "F2"))


async def test_no_reading_a_client_wants_is_ever_skipped() -> None:
    """Random clients and messages: whenever a reading of a message matches a client's filter,
    the client is offered it (the message was decoded)."""
    rng = random.Random(7)
    machines = [str(uuid.uuid4()) for _ in range(12)]
    factories = ["F1", "F2", "F3", "plant-2", "a:b_c"]
    for _ in range(30):
        h = hub()
        subs = []
        for _ in range(rng.randint(1, 4)):
            filt = rng.choice(
                [
                    Filter(factory_ids=frozenset(rng.sample(factories, rng.randint(1, 2)))),
                    Filter(machine_ids=frozenset(rng.sample(machines, rng.randint(1, 3)))),
                    Filter(
                        machine_ids=frozenset(rng.sample(machines, 1)),
                        factory_ids=frozenset(rng.sample(factories, 1)),
                    ),
                ]
            )
            s = Counting(filt)
            h.subscribe(s, None)
            subs.append(s)
        for _ in range(20):
            readings = [
                (rng.choice(machines), rng.choice(factories)) for _ in range(rng.randint(1, 5))
            ]
            want = {
                id(s)
                for s in subs
                for m, f in readings
                if (not s.filter.machine_ids or m in s.filter.machine_ids)
                and (not s.filter.factory_ids or f in s.filter.factory_ids)
            }
            before = {id(s): len(s._pending) for s in subs}
            await feed(h, "reading.x.mixed", mixed(readings))
            got = {id(s) for s in subs if len(s._pending) > before[id(s)]}
            assert want <= got


async def test_resume_across_skipped_messages_says_gap_within_the_linger_it_replays() -> None:
    h = hub()
    m, other = str(uuid.uuid4()), str(uuid.uuid4())
    first = Subscriber(Filter(factory_ids=frozenset({"F1"})), 100)
    h.subscribe(first, None)
    [seen] = [ev for ev in h.events_of("reading.F1." + m, body(m, "F1")) if ev.type == "reading"]
    last_id = f"{h.epoch}-{seen.seq}"
    h.unsubscribe(first)
    # Gone, but F1 lingers: its readings are still decoded, the reconnecting client resumes.
    await feed(h, "reading.F2." + other, body(other, "F2"))  # skipped: nobody watches F2
    await feed(h, "reading.F1." + m, body(m, "F1"))
    back = Subscriber(Filter(factory_ids=frozenset({"F1"}), types=frozenset({"reading"})), 100)
    h.subscribe(back, last_id)
    assert len(back._pending) == 1 and b"event: reading" in back._pending[0]
    last_id = f"{h.epoch}-{h._seq}"
    h.unsubscribe(back)
    # Past the linger, F1's readings are skipped too: resuming over them is a gap.
    h._expire_lingering(time.monotonic() + LINGER_S + 1)
    assert h.skippable(body(m, "F1"))
    await feed(h, "reading.F1." + m, body(m, "F1"))
    again = Subscriber(Filter(factory_ids=frozenset({"F1"})), 100)
    h.subscribe(again, last_id)
    assert len(again._pending) == 1 and b"event: gap" in again._pending[0]
    # A client of a factory that was watched throughout resumes without a gap.
    keeper = Subscriber(Filter(factory_ids=frozenset({"F3"})), 100)
    h.subscribe(keeper, None)
    await feed(h, "reading.F3." + m, body(m, "F3"))
    mark = f"{h.epoch}-{h._seq}"  # the last event the keeper got
    await feed(h, "reading.F2." + other, body(other, "F2"))  # skipped
    await feed(h, "reading.F3." + m, body(m, "F3"))
    resumed = Subscriber(Filter(factory_ids=frozenset({"F3"}), types=frozenset({"reading"})), 100)
    h.subscribe(resumed, mark)
    assert len(resumed._pending) == 1 and b"event: reading" in resumed._pending[0]


async def test_a_machine_whose_readings_were_skipped_is_forgotten_not_called_offline() -> None:
    h = hub()
    watched, unwatched = str(uuid.uuid4()), str(uuid.uuid4())
    anywhere = Subscriber(Filter(), 100)
    h.subscribe(anywhere, None)
    now = time.time_ns()
    await feed(h, "reading.F1." + watched, body(watched, "F1"))
    await feed(h, "reading.F2." + unwatched, body(unwatched, "F2"))
    h.unsubscribe(anywhere)
    h.subscribe(Subscriber(Filter(factory_ids=frozenset({"F1"})), 100), None)
    await feed(h, "reading.F2." + unwatched, body(unwatched, "F2"))  # skipped
    assert h._skips == 1
    later = now + 61 * 10**9
    [offline] = h.sweep(later)
    assert offline.machine_id == watched and b'"online":false' in offline.frame
    assert unwatched not in h._presence
