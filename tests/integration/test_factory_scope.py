"""Factories as a scope in the query API, against the real PostgreSQL, Redis and InfluxDB: what
a user of factory A reads, changes and is refused about factory B (README "Factories: what a
token sees"). An object of another factory answers 404 as an unknown one; naming a factory
outside the scope answers 403; what spans every factory needs a token of every factory."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from services.query_api.deadletters import store
from services.query_api.deadletters.records import LetterRecord
from tests.query_fixtures import new_machine, query_client  # noqa: F401  (fixture)
from tests.tokens import bearer

pytestmark = pytest.mark.integration
Headers = Callable[..., dict[str, str]]


@pytest.fixture
def plant() -> dict[str, str]:
    """Two factories of this test alone."""
    tag = uuid.uuid4().hex[:6]
    return {"A": f"fa-{tag}", "B": f"fb-{tag}"}


def of(role: str, *factories: str) -> dict[str, str]:
    """Headers of a ``role`` user of ``factories`` (none given: every factory)."""
    return bearer(role, factories=list(factories) if factories else None)


def machine_in(c: TestClient, factory: str, **over: str) -> dict[str, Any]:
    return new_machine(c, factory_id=factory, **over)


def side_by_side(
    c: TestClient, plant: dict[str, str]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A new location with a machine of factory A and one of factory B."""
    location = f"Hall {uuid.uuid4().hex[:6]}"
    a, b = (machine_in(c, plant[f], location=location) for f in ("A", "B"))
    return location, a, b


def test_machines_of_another_factory_are_unknown(client: TestClient, plant: dict[str, str]) -> None:
    fa, fb = plant["A"], plant["B"]
    location, a, b = side_by_side(client, plant)
    assert (a["factory_id"], b["factory_id"]) == (fa, fb)
    sup_a, sup_b = of("Supervisor", fa), of("Supervisor", fb)

    listed = client.get("/api/v1/machines", params={"location": location}, headers=sup_a).json()
    assert [m["id"] for m in listed["machines"]] == [a["id"]]
    assert listed["pagination"]["total_records"] == 1
    everyone = client.get("/api/v1/machines", params={"location": location}, headers=of("Operator"))
    assert {m["id"] for m in everyone.json()["machines"]} == {a["id"], b["id"]}

    # Another factory's machine: 404 as an unknown one, for every verb.
    url_b = f"/api/v1/machines/{b['id']}"
    assert client.get(url_b, headers=sup_a).status_code == 404
    resp = client.patch(url_b, json={"status": "error"}, headers=sup_a)
    assert resp.status_code == 404 and resp.json()["message"] == "Machine not found"
    assert client.delete(url_b, headers=of("Management", fa)).status_code == 404
    assert client.get(url_b, headers=sup_b).json()["machine"]["status"] == "active"  # untouched
    assert client.get(f"/api/v1/machines/{a['id']}", headers=sup_a).status_code == 200

    # Naming a factory outside the scope: 403 naming it.
    resp = client.post(
        "/api/v1/machines",
        json={"name": "x", "location": location, "sensor_type": "t", "factory_id": fb},
        headers=sup_a,
    )
    assert resp.status_code == 403 and fb in resp.json()["message"]
    resp = client.get("/api/v1/machines", params={"factory_id": fb}, headers=sup_a)
    assert resp.status_code == 403
    resp = client.patch(f"/api/v1/machines/{a['id']}", json={"factory_id": fb}, headers=sup_a)
    assert resp.status_code == 403
    # A user of both moves a machine between them; then A's user no longer sees it.
    both = of("Supervisor", fa, fb)
    resp = client.patch(f"/api/v1/machines/{a['id']}", json={"factory_id": fb}, headers=both)
    assert resp.status_code == 200 and resp.json()["machine"]["factory_id"] == fb
    assert client.get(f"/api/v1/machines/{a['id']}", headers=sup_a).status_code == 404
    assert client.delete(url_b, headers=of("Management", fb)).status_code == 204


def test_a_new_machine_joins_the_default_factory_unless_named(
    client: TestClient, plant: dict[str, str]
) -> None:
    plain = new_machine(client)
    assert plain["factory_id"] == "default"
    body = {"name": "x", "location": "y", "sensor_type": "t", "factory_id": "no spaces"}
    resp = client.post("/api/v1/machines", json=body, headers=of("Supervisor"))
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "factory_id"
    # A user of factory A only: the default factory is outside its scope.
    body = {"name": "x", "location": "y", "sensor_type": "t"}
    resp = client.post("/api/v1/machines", json=body, headers=of("Supervisor", plant["A"]))
    assert resp.status_code == 403
    resp = client.post(
        "/api/v1/machines",
        json={**body, "factory_id": plant["A"]},
        headers=of("Supervisor", plant["A"]),
    )
    assert resp.status_code == 201 and resp.json()["machine"]["factory_id"] == plant["A"]


def test_history_summary_and_status_keep_to_the_scope(
    client: TestClient, plant: dict[str, str]
) -> None:
    fa, fb = plant["A"], plant["B"]
    location, a, b = side_by_side(client, plant)
    op_a = of("Operator", fa)
    assert client.get(f"/api/v1/data/machine/{a['id']}", headers=op_a).status_code == 200
    resp = client.get(f"/api/v1/data/machine/{b['id']}", headers=op_a)
    assert resp.status_code == 404 and resp.json()["machine_id"] == b["id"]

    summary = client.get("/api/v1/data/summary", params={"location": location}, headers=op_a)
    assert summary.status_code == 200, summary.text
    assert [m["machine_id"] for m in summary.json()["machines"]] == [a["id"]]
    assert summary.json()["machines"][0]["factory_id"] == fa
    both = client.get("/api/v1/data/summary", params={"location": location}, headers=of("Operator"))
    assert {m["machine_id"] for m in both.json()["machines"]} == {a["id"], b["id"]}
    only_b = client.get(
        "/api/v1/data/summary",
        params={"location": location, "factory_id": fb},
        headers=of("Operator"),
    )
    assert [m["machine_id"] for m in only_b.json()["machines"]] == [b["id"]]
    resp = client.get(
        "/api/v1/data/summary", params={"location": location, "factory_id": fb}, headers=op_a
    )
    assert resp.status_code == 403

    status = client.get("/api/v1/machines/status", params={"location": location}, headers=op_a)
    rows = status.json()["machines"]
    assert [(r["machine_id"], r["factory_id"]) for r in rows] == [(a["id"], fa)]
    assert status.json()["summary"]["total"] == 1
    resp = client.get("/api/v1/machines/status", params={"factory_id": fb}, headers=op_a)
    assert resp.status_code == 403
    # A token naming no factory sees no machine at all.
    none = client.get(
        "/api/v1/machines/status", params={"location": location}, headers=bearer(factories=[])
    )
    assert none.json()["machines"] == []


def _one(c: TestClient, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The first row of ``sql``, run on the app's own PostgreSQL pool in its event loop."""

    async def run() -> tuple[Any, ...]:
        async with c.app_state["pool"].connection() as conn:
            cur = await conn.execute(sql, args)
            row = await cur.fetchone()
        assert row is not None
        return tuple(row)

    assert c.portal is not None
    return c.portal.call(run)


def _alert(c: TestClient, machine: dict[str, Any]) -> int:
    row = _one(
        c,
        "INSERT INTO alerts (rule_name, kind, severity, machine_id, factory_id, location,"
        " field, comparison, threshold, value, started_at, raised_at) VALUES ('r', 'threshold',"
        " 'major', %s, %s, %s, 'temperature', '>', 1, 2, now(), now()) RETURNING id",
        (machine["id"], machine["factory_id"], machine["location"]),
    )
    return int(row[0])


def test_alerts_of_another_factory_are_unknown(client: TestClient, plant: dict[str, str]) -> None:
    fa, fb = plant["A"], plant["B"]
    a, b = machine_in(client, fa), machine_in(client, fb)
    alert_a, alert_b = _alert(client, a), _alert(client, b)
    op_a = of("Operator", fa)
    listed = client.get("/api/v1/alerts", params={"state": "open"}, headers=op_a).json()
    ids = {x["id"] for x in listed["alerts"]}
    assert alert_a in ids and alert_b not in ids
    assert all(x["factory_id"] == fa for x in listed["alerts"])
    every = client.get("/api/v1/alerts", params={"factory_id": fb}, headers=of("Operator"))
    assert [x["id"] for x in every.json()["alerts"]] == [alert_b]
    assert client.get("/api/v1/alerts", params={"factory_id": fb}, headers=op_a).status_code == 403

    assert client.get(f"/api/v1/alerts/{alert_b}", headers=op_a).status_code == 404
    for action in ("acknowledge", "clear"):
        resp = client.post(f"/api/v1/alerts/{alert_b}/{action}", json={}, headers=op_a)
        assert resp.status_code == 404, resp.text
    assert (
        client.get(f"/api/v1/alerts/{alert_b}", headers=of("Operator", fb)).json()["alert"]["state"]
        == "active"
    )
    resp = client.post(f"/api/v1/alerts/{alert_a}/acknowledge", json={}, headers=op_a)
    assert resp.status_code == 200 and resp.json()["alert"]["state"] == "acknowledged"


def _rule(**over: Any) -> dict[str, Any]:
    return {
        "name": f"hot {uuid.uuid4().hex[:6]}",
        "field": "temperature",
        "comparison": ">",
        "threshold": 90,
        **over,
    }


def test_rules_belong_to_a_factory(client: TestClient, plant: dict[str, str]) -> None:
    fa, fb = plant["A"], plant["B"]
    sup_a, sup_b, mgmt_a = of("Supervisor", fa), of("Supervisor", fb), of("Management", fa)
    url = "/api/v1/alerts/rules"
    # A user of some factories names one of them; a rule of every factory is not theirs to make.
    resp = client.post(url, json=_rule(), headers=sup_a)
    assert resp.status_code == 403, resp.text
    assert client.post(url, json=_rule(factory_id=fb), headers=sup_a).status_code == 403
    resp = client.post(url, json=_rule(factory_id=fa), headers=sup_a)
    assert resp.status_code == 201, resp.text
    rule_a = resp.json()["rule"]
    assert rule_a["factory_id"] == fa
    # A factory-scoped rule belongs to the factory it names.
    scoped = client.post(url, json=_rule(scope_type="factory", scope_value=fa), headers=sup_a)
    assert scoped.status_code == 201 and scoped.json()["rule"]["factory_id"] == fa
    mismatch = _rule(scope_type="factory", scope_value=fa, factory_id=fb)
    assert client.post(url, json=mismatch, headers=of("Supervisor")).status_code == 400
    # A machine's rule takes the machine's factory; another factory's machine is unknown.
    a, b = machine_in(client, fa), machine_in(client, fb)
    on_a = client.post(url, json=_rule(scope_type="machine", scope_value=a["id"]), headers=sup_a)
    assert on_a.status_code == 201 and on_a.json()["rule"]["factory_id"] == fa
    on_b = client.post(url, json=_rule(scope_type="machine", scope_value=b["id"]), headers=sup_a)
    assert on_b.status_code == 404
    everywhere = client.post(url, json=_rule(), headers=of("Supervisor"))
    assert everywhere.status_code == 201 and everywhere.json()["rule"]["factory_id"] is None
    rule_all = everywhere.json()["rule"]

    seen_by_b = {r["id"] for r in client.get(url, headers=sup_b).json()["rules"]}
    assert rule_a["id"] not in seen_by_b and rule_all["id"] in seen_by_b
    seen_by_a = {r["id"] for r in client.get(url, headers=sup_a).json()["rules"]}
    assert {rule_a["id"], rule_all["id"]} <= seen_by_a

    # B's users cannot change or delete A's rule (404); A's cannot change one of every factory.
    changed = _rule(factory_id=fa, threshold=95)
    assert client.put(f"{url}/{rule_a['id']}", json=changed, headers=sup_b).status_code == 404
    resp = client.delete(f"{url}/{rule_a['id']}", headers=of("Management", fb))
    assert resp.status_code == 404
    resp = client.put(f"{url}/{rule_all['id']}", json=_rule(factory_id=fa), headers=sup_a)
    assert resp.status_code == 403
    assert client.delete(f"{url}/{rule_all['id']}", headers=mgmt_a).status_code == 403
    resp = client.put(f"{url}/{rule_a['id']}", json=changed, headers=sup_a)
    assert resp.status_code == 200 and resp.json()["rule"]["threshold"] == 95
    # Moving A's rule to B is naming a factory outside the scope.
    moved = _rule(factory_id=fb)
    assert client.put(f"{url}/{rule_a['id']}", json=moved, headers=sup_a).status_code == 403
    assert client.delete(f"{url}/{rule_a['id']}", headers=mgmt_a).status_code == 204


def _letter(c: TestClient, reason: str, factory: str | None) -> int:
    readings = (
        [{"machine_id": str(uuid.uuid4()), "factory_id": factory, "ts": 1, "fields": {}}]
        if factory
        else []
    )
    record = LetterRecord(
        message_id=uuid.uuid4().hex,
        reason=reason,
        error="e",
        source="http" if factory else "unknown",
        first_seen=datetime.now(UTC),
        readings=readings,
        raw=None if factory else "\\x00",
    )
    assert record.factory_id == factory

    assert c.portal is not None
    assert c.portal.call(store.insert, c.app_state["pool"], record)
    sql = "SELECT id, factory_id FROM dead_letters WHERE message_id = %s"
    letter_id, stored_factory = _one(c, sql, (record.message_id,))
    assert stored_factory == factory
    return int(letter_id)


def test_dead_letters_keep_to_the_scope(client: TestClient, plant: dict[str, str]) -> None:
    fa, fb = plant["A"], plant["B"]
    reason = f"scope_{uuid.uuid4().hex[:6]}"
    la, lb, lnone = (
        _letter(client, reason, fa),
        _letter(client, reason, fb),
        _letter(client, reason, None),
    )
    mgmt_a, everyone = of("Management", fa), of("Management")
    listed = client.get("/api/v1/deadletters", params={"reason": reason}, headers=mgmt_a).json()
    assert [x["id"] for x in listed["dead_letters"]] == [la]
    assert listed["dead_letters"][0]["factory_id"] == fa
    all_of_them = client.get("/api/v1/deadletters", params={"reason": reason}, headers=everyone)
    assert {x["id"] for x in all_of_them.json()["dead_letters"]} == {la, lb, lnone}
    resp = client.get("/api/v1/deadletters", params={"factory_id": fb}, headers=mgmt_a)
    assert resp.status_code == 403
    assert client.get(f"/api/v1/deadletters/{lb}", headers=mgmt_a).status_code == 404
    assert client.get(f"/api/v1/deadletters/{lnone}", headers=mgmt_a).status_code == 404
    assert client.get(f"/api/v1/deadletters/{la}", headers=mgmt_a).status_code == 200
    stats = client.get("/api/v1/deadletters/stats", headers=mgmt_a).json()
    assert {r["key"] for r in stats["by_reason"]} >= {reason}
    [mine] = [r for r in stats["by_reason"] if r["key"] == reason]
    assert mine["total"] == 1

    # Replaying another factory's letters: not found, as unknown ids.
    resp = client.post("/api/v1/deadletters/replay", json={"ids": [lb, lnone]}, headers=mgmt_a)
    assert resp.status_code == 200, resp.text
    assert [r["outcome"] for r in resp.json()["results"]] == ["not_found", "not_found"]
    # Purging by reason deletes only the caller's factory's letters.
    resp = client.post("/api/v1/deadletters/purge", json={"reason": reason}, headers=mgmt_a)
    assert resp.json()["deleted"] == 1
    left = client.get("/api/v1/deadletters", params={"reason": reason}, headers=everyone).json()
    assert {x["id"] for x in left["dead_letters"]} == {lb, lnone}


def test_what_spans_every_factory_needs_a_token_of_every_factory(
    client: TestClient, plant: dict[str, str]
) -> None:
    mgmt_a = of("Management", plant["A"])
    assert client.get("/api/v1/config", headers=mgmt_a).status_code == 200
    body = {"setting_name": "max_temperature_threshold", "setting_value": 80}
    resp = client.post("/api/v1/config/update", json=body, headers=mgmt_a)
    assert resp.status_code == 403 and "every factory" in resp.json()["message"]
    assert client.get("/api/v1/audit", headers=mgmt_a).status_code == 403
    assert client.get("/api/v1/audit", headers=of("Management")).status_code == 200
