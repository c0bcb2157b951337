"""Alerts end to end with the running pipeline: a rule, a threshold crossed over HTTP, the alert
on the live stream and in the API, acknowledged (who is recorded), cleared when the value comes
back, never opened twice for one episode; the config's max_temperature_threshold as a rule; the
retained MQTT topic."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e import cleanup
from tests.e2e.pipeline import create_machine, iso, poll, ready_url
from tests.e2e.test_live_stream import post_batch, post_reading
from tests.live_client import LiveReader
from tests.mqtt_fixtures import service_mqtt

pytestmark = pytest.mark.e2e
Headers = Callable[[str], dict[str, str]]


@pytest.fixture(scope="module")
def alerter() -> str:
    return ready_url("alerter", 8006)


def send(
    urls: dict[str, str], headers: Headers, machine: str, temp: float, at: datetime | None = None
) -> None:
    post_reading(urls, headers, machine, temp, at, location="Alert hall")


def alerts_of(
    urls: dict[str, str], headers: Headers, machine: str, rule: str | None = None
) -> list[dict[str, Any]]:
    # By rule too: rules other tests leave behind may apply to every machine.
    resp = httpx.get(
        f"{urls['query_api']}/api/v1/alerts",
        params={"machine_id": machine, **({"rule_id": rule} if rule else {})},
        headers=headers("Operator"),
    )
    assert resp.status_code == 200, resp.text
    return list(resp.json()["alerts"])


def make_rule(urls: dict[str, str], headers: Headers, machine: str, **over: Any) -> dict[str, Any]:
    body = {
        "name": f"hot-{uuid.uuid4().hex[:6]}",
        "field": "temperature",
        "comparison": ">",
        "threshold": 40.0,
        "clear_threshold": 35.0,
        "severity": "critical",
        "scope_type": "machine",
        "scope_value": machine,
        **over,
    }
    resp = cleanup.created(
        httpx.post(
            f"{urls['query_api']}/api/v1/alerts/rules", json=body, headers=headers("Supervisor")
        )
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["rule"])


def retained(topic: str) -> dict[str, Any] | None:
    m = service_mqtt()  # the edge speaks MQTT 3.1.1 and wants a user and a client id
    cmd = ["mosquitto_sub", "-h", m.host, "-p", str(m.port), "-t", topic, "-C", "1", "-W", "3"]
    cmd += ["-V", "mqttv311", "-i", f"{m.username or 'sub'}-{uuid.uuid4().hex[:8]}"]
    if m.username:
        cmd += ["-u", m.username, *(["-P", m.password.get_secret_value()] if m.password else [])]
    out = subprocess.run(
        cmd,
        capture_output=True,
        timeout=10,
        check=False,
    )
    return orjson.loads(out.stdout) if out.returncode == 0 and out.stdout else None


def test_threshold_alert_lifecycle_live_and_in_the_api(
    alerter: str, urls: dict[str, str], auth_headers: Headers
) -> None:
    machine = create_machine(urls, auth_headers, "Alert hall")
    rule = make_rule(urls, auth_headers, machine)
    # The alerter re-reads rules every ALERTER_RULES_REFRESH_S (2 s): wait until it judges
    # with this one, by sending hot readings until the alert opens.
    with LiveReader(
        urls["query_api"], auth_headers("Operator"), {"machine_id": machine, "types": "alert"}
    ) as live:
        started = datetime.now(UTC) - timedelta(minutes=5)
        send(urls, auth_headers, machine, 30.0, started)
        k = 0

        def hot() -> list[dict[str, Any]]:
            nonlocal k
            k += 1
            send(urls, auth_headers, machine, 50.0 + k, started + timedelta(seconds=k))
            return alerts_of(urls, auth_headers, machine, rule["id"])

        poll(hot, lambda a: len(a) == 1, timeout=15)
        opened = live.wait_for(lambda e: e.data.get("event") == "opened", 2)
        assert opened.data["rule_id"] == rule["id"]
        assert opened.data["severity"] == "critical" and opened.data["state"] == "active"
        alert_id = opened.data["id"]

        send(urls, auth_headers, machine, 55.0, started + timedelta(seconds=k + 1))
        # A hot reading delivered again (same time) and a late one change nothing.
        send(urls, auth_headers, machine, 59.0, started + timedelta(seconds=1))

        ack = httpx.post(
            f"{urls['query_api']}/api/v1/alerts/{alert_id}/acknowledge",
            json={"note": "checking the coolant"},
            headers=auth_headers("Operator"),
        )
        assert ack.status_code == 200, ack.text
        assert ack.json()["alert"]["state"] == "acknowledged"
        assert ack.json()["alert"]["acknowledged_by"].startswith("e2e-operator-")
        live.wait_for(lambda e: e.data.get("event") == "acknowledged", 2)
        again = httpx.post(
            f"{urls['query_api']}/api/v1/alerts/{alert_id}/acknowledge",
            json={},
            headers=auth_headers("Operator"),
        )
        assert again.status_code == 409

        # 38 is under the threshold but above the clear threshold (hysteresis): still open.
        send(urls, auth_headers, machine, 38.0, started + timedelta(seconds=k + 2))
        sent = time.monotonic()
        send(urls, auth_headers, machine, 30.0, started + timedelta(seconds=k + 3))
        cleared = live.wait_for(lambda e: e.data.get("event") == "cleared", 2)
        assert time.monotonic() - sent < 2
        assert cleared.data["cleared_by"] == "alerter" and cleared.data["cleared_value"] == 30.0

    [only] = alerts_of(urls, auth_headers, machine, rule["id"])
    assert only["id"] == alert_id and only["state"] == "cleared"
    assert only["acknowledged_by"].startswith("e2e-operator-")
    audit = httpx.get(
        f"{urls['query_api']}/api/v1/audit",
        params={"target": f"alert:{alert_id}"},
        headers=auth_headers("Management"),
    ).json()["entries"]
    assert [e["action"] for e in audit] == ["alert.acknowledge"]

    # Retained for SCADA/HMI: the machine's current alerts (none open now).
    state = poll(
        lambda: retained(f"millrace/alerts/{machine}"),
        lambda s: s is not None and s["last_event"] == "cleared",
        timeout=10,
    )
    assert state["open_alerts"] == []

    # A later hot reading is a new episode: a second alert.
    send(urls, auth_headers, machine, 45.0, started + timedelta(seconds=k + 10))
    poll(
        lambda: alerts_of(urls, auth_headers, machine, rule["id"]), lambda a: len(a) == 2, timeout=5
    )


def test_max_temperature_threshold_is_a_rule_within_seconds(
    alerter: str, urls: dict[str, str], auth_headers: Headers
) -> None:
    threshold = 2500.0 + uuid.uuid4().int % 100
    before = httpx.get(
        f"{urls['query_api']}/api/v1/config",
        params={"name": "max_temperature_threshold"},
        headers=auth_headers("Management"),
    )
    try:
        _default_rule_follows(urls, auth_headers, threshold)
    finally:
        if before.status_code == 200:
            httpx.post(
                f"{urls['query_api']}/api/v1/config/update",
                json={
                    "setting_name": "max_temperature_threshold",
                    "setting_value": before.json()["settings"][0]["value"],
                },
                headers=auth_headers("Management"),
            )


def _default_rule_follows(urls: dict[str, str], auth_headers: Headers, threshold: float) -> None:
    resp = httpx.post(
        f"{urls['query_api']}/api/v1/config/update",
        json={"setting_name": "max_temperature_threshold", "setting_value": threshold},
        headers=auth_headers("Management"),
    )
    assert resp.status_code == 200, resp.text
    machine = create_machine(urls, auth_headers, "Alert hall")
    rules = poll(
        lambda: httpx.get(
            f"{urls['query_api']}/api/v1/alerts/rules", headers=auth_headers("Operator")
        ).json()["rules"],
        lambda rs: any(
            r["managed_by"] == "max_temperature_threshold" and r["threshold"] == threshold
            for r in rs
        ),
        timeout=5,
    )
    [managed] = [r for r in rules if r["managed_by"] == "max_temperature_threshold"]
    # Kept by the setting: not editable as a rule.
    put = httpx.put(
        f"{urls['query_api']}/api/v1/alerts/rules/{managed['id']}",
        json={"name": "x", "field": "temperature", "comparison": ">", "threshold": 1},
        headers=auth_headers("Supervisor"),
    )
    assert put.status_code == 409
    t0 = datetime.now(UTC)
    k = 0

    def hot() -> list[dict[str, Any]]:
        nonlocal k
        k += 1
        send(urls, auth_headers, machine, threshold + 1, t0 + timedelta(seconds=k))
        return alerts_of(urls, auth_headers, machine, managed["id"])

    [alert] = poll(hot, lambda a: len(a) == 1, timeout=10)
    assert alert["rule_id"] == managed["id"] and alert["threshold"] == threshold


def test_rule_permissions_and_validation(urls: dict[str, str], auth_headers: Headers) -> None:
    base = f"{urls['query_api']}/api/v1/alerts/rules"
    rule = {"name": "r", "field": "temperature", "comparison": ">", "threshold": 1.0}
    assert httpx.post(base, json=rule, headers=auth_headers("Operator")).status_code == 403
    bad = httpx.post(
        base,
        json={**rule, "clear_threshold": 5.0, "scope_type": "location"},
        headers=auth_headers("Supervisor"),
    )
    assert bad.status_code == 400
    made = cleanup.created(httpx.post(base, json=rule, headers=auth_headers("Supervisor")))
    created = made.json()["rule"]
    url = f"{base}/{created['id']}"
    assert httpx.delete(url, headers=auth_headers("Supervisor")).status_code == 403
    assert httpx.delete(url, headers=auth_headers("Management")).status_code == 204
    assert httpx.delete(url, headers=auth_headers("Management")).status_code == 404


def test_a_user_of_one_factory_gets_only_its_factory_s_alerts(
    alerter: str, urls: dict[str, str], auth_headers: Headers, token_for: Callable[..., str]
) -> None:
    """Alerts of two factories raised by one batch (factory B's machine first): the stream of a
    user of factory A carries A's alert, and B's never; the API hides B's alert from A's user."""
    tag = uuid.uuid4().hex[:6]
    q = urls["query_api"]
    admin = auth_headers("Supervisor")  # every factory
    machines: dict[str, str] = {}
    rules: dict[str, str] = {}
    for name in ("A", "B"):
        factory = f"al{name.lower()}-{tag}"
        machines[name] = create_machine(urls, auth_headers, "Alert hall", f"Oven {name}", factory)
        rule = make_rule(
            urls, auth_headers, machines[name], threshold=-1000.0, clear_threshold=None
        )
        rules[name] = rule["id"]
        assert alerts_of(urls, auth_headers, machines[name], rules[name]) == []
    user_a = {"Authorization": f"Bearer {token_for('Operator', f'ala-{tag}')}"}
    with LiveReader(q, user_a, {"types": "alert"}) as live:
        assert live.status_code == 200

        def both_open() -> list[list[dict[str, Any]]]:
            at = iso(datetime.now(UTC))
            batch = [
                {"machine_id": machines[n], "readings": [{"timestamp": at, "temperature": 20.0}]}
                for n in ("B", "A")
            ]
            post_batch(urls, admin, batch)
            return [alerts_of(urls, auth_headers, machines[n], rules[n]) for n in ("A", "B")]

        open_a, open_b = poll(both_open, lambda found: all(found), timeout=30)
        assert (open_a[0]["factory_id"], open_b[0]["factory_id"]) == (f"ala-{tag}", f"alb-{tag}")
        event = live.wait_for(lambda e: e.type == "alert", 5)
        assert event.data["machine_id"] == machines["A"], event.data
    seen_by_a = httpx.get(f"{q}/api/v1/alerts/{open_b[0]['id']}", headers=user_a, timeout=10)
    assert seen_by_a.status_code == 404
