"""The live hub at scale: an event meets only the clients that may want it, and an event no
client wants is never encoded."""

from __future__ import annotations

import time
import uuid

import orjson

from services.query_api.live.events import LiveEvent
from services.query_api.live.hub import LiveHub
from services.query_api.live.settings import LiveSettings
from services.query_api.live.subscriber import Filter, Subscriber
from shared.envelope import Envelope
from shared.settings import AmqpSettings


def hub() -> LiveHub:
    return LiveHub(AmqpSettings(), LiveSettings(), connection=None, online_threshold_s=60)  # type: ignore[arg-type]


def body(machine: str, factory: str, n: int = 1) -> bytes:
    now = time.time_ns()
    readings = [
        {
            "machine_id": machine,
            "factory_id": factory,
            "sensor_type": "Temperature",
            "location": "L1",
            "ts": now + i,
            "fields": {"temperature": 20.0 + i},
        }
        for i in range(n)
    ]
    return Envelope(source="http", readings=readings, routing_key="r").encode()


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
