"""Alert rule evaluation, pure: duration, hysteresis, scope, order, fail-over, offline."""

from __future__ import annotations

import hashlib
import hmac
import random

from services.alerter.notify import signature
from services.alerter.offline import offline_actions
from services.alerter.rules import SCOPES, Evaluator, Rule

S = 1_000_000_000
# Opens above 80 °C, clears below 75 °C.
HOT_WHEN = {"field": "temperature", "comparison": ">", "threshold": 80.0, "clear_threshold": 75.0}
HOT = Rule(id="r1", name="hot", kind="threshold", severity="major", **HOT_WHEN)  # type: ignore[arg-type]


def reading(t: int, temp: float, machine: str = "m1", **tags: str) -> dict:
    return {"machine_id": machine, "ts": t * S, "fields": {"temperature": temp}, **tags}


def kinds(ev: Evaluator, *readings: dict) -> list[str]:
    return [a.kind for r in readings for a in ev.evaluate(r)]


def test_opens_once_and_clears_only_past_the_clear_threshold() -> None:
    ev = Evaluator()
    ev.set_rules([HOT])
    assert kinds(ev, reading(1, 70), reading(2, 81), reading(3, 85), reading(4, 78)) == ["open"]
    # 78 is below the threshold but above the clear threshold: still open (no flapping).
    assert kinds(ev, reading(5, 81), reading(6, 74.9)) == ["clear"]
    assert kinds(ev, reading(7, 82)) == ["open"]


def test_duration_must_hold_in_reading_time() -> None:
    ev = Evaluator()
    ev.set_rules([_with(duration_s=10)])
    assert kinds(ev, reading(0, 81), reading(5, 82), reading(9, 83)) == []
    [action] = ev.evaluate(reading(10, 84))
    assert action.kind == "open" and action.started_ns == 0
    ev2 = Evaluator()
    ev2.set_rules([_with(duration_s=10)])
    # Interrupted: the clock starts again.
    assert kinds(ev2, reading(0, 81), reading(5, 70), reading(6, 81), reading(12, 81)) == []
    assert kinds(ev2, reading(16, 81)) == ["open"]


def _with(**changes: object) -> Rule:
    fields = {k: getattr(HOT, k) for k in HOT.__slots__}
    fields.update(changes)
    return Rule(**fields)  # type: ignore[arg-type]


def test_late_and_redelivered_readings_change_nothing() -> None:
    ev = Evaluator()
    ev.set_rules([HOT])
    assert kinds(ev, reading(10, 90)) == ["open"]
    assert kinds(ev, reading(10, 90), reading(5, 90), reading(11, 70)) == ["clear"]
    # A late hot reading from inside the finished episode does not open a second alert.
    assert kinds(ev, reading(9, 95), reading(11, 95)) == []


def test_scope_limits_the_machines() -> None:
    ev = Evaluator()
    ev.set_rules([_with(scope_type="location", scope_value="Hall 2")])
    assert kinds(ev, reading(1, 90, "a", location="Hall 1")) == []
    assert kinds(ev, reading(1, 90, "b", location="Hall 2")) == ["open"]
    ev.set_rules([_with(scope_type="machine", scope_value="c")])
    assert kinds(ev, reading(2, 90, "a"), reading(2, 90, "c")) == ["open"]


def test_less_than_rules_and_no_clear_threshold() -> None:
    ev = Evaluator()
    ev.set_rules([_with(field="temperature", comparison="<", threshold=5.0, clear_threshold=None)])
    assert kinds(ev, reading(1, 4), reading(2, 4.5), reading(3, 5.0)) == ["open", "clear"]


def test_open_state_follows_postgres_and_undo_allows_a_retry() -> None:
    ev = Evaluator()
    ev.set_rules([HOT])
    ev.sync_open({("r1", "m1")})  # opened by the replica before a fail-over
    assert kinds(ev, reading(1, 90)) == []
    ev.sync_open(set())  # cleared by hand
    [action] = ev.evaluate(reading(2, 90))
    assert action.kind == "open"
    ev.undo(action)  # could not be stored: the same reading, delivered again, opens it
    assert kinds(ev, reading(2, 90)) == ["open"]


def test_offline_opens_after_silence_and_clears_when_seen() -> None:
    rule = Rule(id="off", name="silent", kind="offline", severity="minor", offline_after_s=60)
    now = 1_000 * S
    machines = [
        {"machine_id": "a", "last_seen_ns": now - 61 * S},
        {"machine_id": "b", "last_seen_ns": now - 10 * S},
        {"machine_id": "never", "last_seen_ns": None},
    ]
    acts = offline_actions([rule], machines, set(), now)
    assert [(a.kind, a.reading["machine_id"]) for a in acts] == [("open", "a")]
    acts = offline_actions([rule], machines, {("off", "a"), ("off", "b")}, now)
    assert [(a.kind, a.reading["machine_id"]) for a in acts] == [("clear", "b")]


def test_webhook_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"event":"opened"}'
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature(b"k", body) == "sha256=" + expected


def test_a_rule_of_a_factory_watches_only_machines_registered_there() -> None:
    ev = Evaluator()
    ev.set_rules([_with(id="ra", factory_id="plant-a"), _with(id="rall")])
    # The machine carries its registered factory (the alerter looks it up).
    opened = ev.evaluate(reading(1, 90, "m1", factory_id="plant-a"))
    assert sorted(a.rule.id for a in opened) == ["ra", "rall"]
    elsewhere = ev.evaluate(reading(1, 90, "m2", factory_id="plant-b"))
    assert [a.rule.id for a in elsewhere] == ["rall"]
    unregistered = ev.evaluate(reading(1, 90, "m3", factory_id=None))  # type: ignore[arg-type]
    assert [a.rule.id for a in unregistered] == ["rall"]
    # Its scope still narrows it within the factory.
    narrow = _with(id="rloc", factory_id="plant-a", scope_type="location", scope_value="Hall 2")
    assert narrow.applies({"factory_id": "plant-a", "location": "Hall 2"})
    assert not narrow.applies({"factory_id": "plant-a", "location": "Hall 3"})
    assert not narrow.applies({"factory_id": "plant-b", "location": "Hall 2"})


def test_offline_rules_of_a_factory() -> None:
    rule = Rule(
        id="off",
        name="silent",
        kind="offline",
        severity="minor",
        offline_after_s=60,
        factory_id="plant-a",
    )
    machines = [
        {"machine_id": "m1", "factory_id": "plant-a", "last_seen_ns": 0},
        {"machine_id": "m2", "factory_id": "plant-b", "last_seen_ns": 0},
    ]
    actions = offline_actions([rule], machines, set(), 120 * S)
    assert [(a.kind, a.reading["machine_id"]) for a in actions] == [("open", "m1")]


def test_a_snapshot_of_open_alerts_read_before_a_decision_does_not_undo_it() -> None:
    """The alerter re-reads PostgreSQL's open alerts while it keeps judging readings: an alert
    opened (or cleared) here after the snapshot was taken keeps its state."""
    ev = Evaluator()
    ev.set_rules([HOT])
    as_of = ev.changes  # the snapshot is read now: nothing open
    assert kinds(ev, reading(1, 95)) == ["open"]
    ev.sync_open(set(), as_of)  # the stale snapshot says "not open"
    assert kinds(ev, reading(2, 96)) == []  # still open: no second alert for the episode
    as_of = ev.changes
    assert kinds(ev, reading(3, 10)) == ["clear"]
    ev.sync_open({("r1", "m1")}, as_of)  # stale again: it says "open"
    assert kinds(ev, reading(4, 97)) == ["open"]  # a new episode: the clear was not forgotten
    ev.sync_open(set(), ev.changes)  # a fresh snapshot (cleared by hand) still applies
    assert kinds(ev, reading(5, 98)) == ["open"]


def test_the_rules_watching_a_series_are_those_that_apply_in_order_for_every_scope() -> None:
    """The evaluator keeps, per series, the rules that watch it: always the same rules, in the
    same order, as asking every rule (every scope, a factory or none, the field present)."""
    rng = random.Random(3)
    values = {
        "machine": ["m1", "m2", "m3"],
        "sensor_type": ["Temperature", "Vibration"],
        "location": ["Hall 1", "Hall 2"],
        "factory": ["plant-a", "plant-b"],
    }
    fields = ["temperature", "pressure", "speed"]

    def random_rule(i: int) -> Rule:
        scope = rng.choice(SCOPES)
        return _with(
            id=f"r{i}",
            field=rng.choice(fields),
            scope_type=scope,
            scope_value=None if scope == "all" else rng.choice(values[scope]),
            factory_id=rng.choice([None, "plant-a", "plant-b"]),
        )

    ev = Evaluator()
    for _ in range(5):
        rules = [random_rule(i) for i in range(12)]
        ev.set_rules(rules)  # the rules change: nothing worked out before is kept
        for _ in range(300):
            r = {
                "machine_id": rng.choice(values["machine"]),
                "sensor_type": rng.choice(values["sensor_type"]),
                "location": rng.choice(values["location"]),
                "factory_id": rng.choice([None, *values["factory"]]),
            }
            present = {f: 1.0 for f in rng.sample(fields, rng.randint(1, 3))}
            expected = tuple(x for x in rules if x.field in present and x.applies(r))
            assert ev.watching(r, present) == expected


def test_a_reading_no_rule_watches_still_counts_as_the_newest_of_its_machine() -> None:
    ev = Evaluator()
    ev.set_rules([HOT])
    assert ev.evaluate({"machine_id": "m1", "ts": 5 * S, "fields": {"pressure": 1.0}}) == []
    assert kinds(ev, reading(4, 90)) == []  # older than a reading already judged
    assert kinds(ev, reading(6, 90)) == ["open"]


def test_a_snapshot_read_while_a_decision_is_being_recorded_does_not_undo_it() -> None:
    """A clear is decided, then recorded in PostgreSQL; the open alerts re-read in between
    still list the alert. The snapshot is as of the decisions recorded, so the clear stands
    and the next crossing opens a new alert (the benchmark's missed episodes)."""
    ev = Evaluator()
    ev.set_rules([HOT])
    [opened] = ev.evaluate(reading(1, 95))
    ev.recorded(opened)
    [cleared] = ev.evaluate(reading(2, 10))  # decided; its UPDATE not committed yet
    as_of = ev.settled  # the refresh starts reading its snapshot now
    ev.sync_open({("r1", "m1")}, as_of)  # the snapshot still shows the alert open
    ev.recorded(cleared)
    assert kinds(ev, reading(3, 96)) == ["open"]
