"""Every role x every protected endpoint of every HTTP service, against the running pipeline.

The endpoints and the permission each needs are read from the services' own OpenAPI documents
(``x-required-permission``, set by the same decorator that enforces it), so a new endpoint is
covered the day it is added. A role lacking the permission gets 403 naming it; a role holding it
gets past authorization and an answer of the handler (2xx, 400 for an empty body, 404 for an
unknown id; never 401/403 and never a 5xx); no token at all gets 401.

Then role x factory x endpoint: users of factory A, of factory B, of every factory, and a gateway
of factory A, against the machines, data, status, alerts, rules, dead letters, configuration,
audit and live stream of factory A (README "Factories: what a token sees"): something of another
factory answers 404 as an unknown id, naming a factory outside the scope 403, what spans every
factory 403 to a user of some factories only.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shared.auth.roles import PERMISSIONS, Role
from tests.e2e import cleanup
from tests.e2e.test_live_stream import post_batch
from tests.polling import poll

pytestmark = pytest.mark.e2e
PUBLIC = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/token"),
    ("GET", "/.well-known/jwks.json"),
    # RabbitMQ's HTTP auth backend asks these about MQTT clients (the client's own secret is
    # the credential, checked by auth; no bearer token).
    ("POST", "/api/v1/mqtt/auth/user"),
    ("POST", "/api/v1/mqtt/auth/vhost"),
    ("POST", "/api/v1/mqtt/auth/resource"),
    ("POST", "/api/v1/mqtt/auth/topic"),
}
# What a role holding the permission may get for these requests (an empty body, a random id):
# past authorization, and never a server error.
PAST_AUTHORIZATION = {200, 201, 202, 204, 400, 404, 406, 409, 415, 422}
# Any valid token, no permission: they concern the caller's own session.
SELF = {("GET", "/api/v1/auth/me"), ("POST", "/api/v1/auth/logout")}


def operations(urls: dict[str, str]) -> list[tuple[str, str, str, str | None]]:
    out = []
    for service in ("ingest_gateway", "query_api", "auth"):
        doc = httpx.get(f"{urls[service]}/openapi.json", timeout=10).json()
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                out.append((service, method.upper(), path, op.get("x-required-permission")))
    return out


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


def call(url: str, method: str, headers: dict[str, str]) -> httpx.Response:
    body: Any = {} if method in ("POST", "PATCH", "PUT") else None
    with httpx.stream(method, url, json=body, headers=headers, timeout=15) as resp:
        # The live stream (server-sent events) never ends: its status is the answer.
        if not resp.headers.get("content-type", "").startswith("text/event-stream"):
            resp.read()
    return resp


@pytest.fixture
def gateway_token(urls: dict[str, str]) -> str:
    gateway_id = cleanup.gateway(f"GW-{uuid.uuid4().hex[:6]}")
    out = subprocess.run(
        [sys.executable, "-m", "services.auth", "create-gateway", gateway_id],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    fields = dict(re.findall(r"^(client_id|client_secret):\s+(\S+)$", out, re.MULTILINE))
    resp = httpx.post(
        f"{urls['auth']}/api/v1/auth/token",
        data={"grant_type": "client_credentials", **fields},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def test_matrix(urls: dict[str, str], token_for: Callable[[str], str], gateway_token: str) -> None:
    ops = operations(urls)
    protected = [op for op in ops if (op[1], op[2]) not in PUBLIC]
    assert len(protected) >= 25, "the OpenAPI documents list fewer endpoints than expected"
    tokens = {
        role.value: token_for(role.value)
        for role in (Role.OPERATOR, Role.SUPERVISOR, Role.MANAGEMENT)
    }
    tokens[Role.GATEWAY.value] = gateway_token
    failures = []
    for service, method, path, permission in protected:
        if (method, path) == ("POST", "/api/v1/auth/logout"):
            continue  # would revoke the shared tokens; covered by the auth tests
        url = urls[service] + concrete(path)
        resp = call(url, method, {})
        if resp.status_code != 401:
            failures.append(f"{method} {path} without token → {resp.status_code}")
        for role, token in tokens.items():
            resp = call(url, method, {"Authorization": f"Bearer {token}"})
            allowed = permission is None or permission in PERMISSIONS[Role(role)]
            if allowed and resp.status_code not in PAST_AUTHORIZATION:
                failures.append(f"{role} {method} {path} → {resp.status_code} (allowed)")
            if not allowed and (resp.status_code != 403 or str(permission) not in resp.text):
                failures.append(f"{role} {method} {path} → {resp.status_code} (needs {permission})")
    assert not failures, "\n".join(failures)


def test_public_surface(urls: dict[str, str]) -> None:
    for service in ("ingest_gateway", "query_api", "auth"):
        for path in ("/health", "/ready", "/metrics", "/openapi.json"):
            assert httpx.get(urls[service] + path, timeout=10).status_code == 200, (service, path)
    assert httpx.get(urls["auth"] + "/.well-known/jwks.json", timeout=10).json()["keys"]


@dataclass(frozen=True)
class Caller:
    name: str
    role: Role
    factories: tuple[str, ...] | None  # None: every factory
    headers: dict[str, str]

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]

    def sees(self, factory: str) -> bool:
        return self.factories is None or factory in self.factories


@dataclass
class Plant:
    """Factory A and B of this run, each with a machine at one shared location; A has a rule and
    an alert the running alerter raised on its machine."""

    a: str
    b: str
    location: str
    machine_a: str
    machine_b: str
    rule_a: dict[str, Any]
    alert_a: int


def _machine(url: str, headers: dict[str, str], factory: str, location: str) -> str:
    body = {"name": f"M-{uuid.uuid4().hex[:6]}", "location": location, "sensor_type": "Temperature"}
    resp = cleanup.created(
        httpx.post(
            f"{url}/api/v1/machines",
            json={**body, "factory_id": factory},
            headers=headers,
            timeout=10,
        )
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["machine"]["id"])


def _plant(urls: dict[str, str], admin: dict[str, str]) -> Plant:
    tag = uuid.uuid4().hex[:6]
    a, b, location = f"fa-{tag}", f"fb-{tag}", f"Scope hall {tag}"
    q = urls["query_api"]
    machine_a, machine_b = (_machine(q, admin, f, location) for f in (a, b))
    rule = {
        "name": f"any reading {tag}",
        "field": "temperature",
        "comparison": ">",
        "threshold": -1000,
        "scope_type": "machine",
        "scope_value": machine_a,
    }
    resp = cleanup.created(
        httpx.post(f"{q}/api/v1/alerts/rules", json=rule, headers=admin, timeout=10)
    )
    assert resp.status_code == 201, resp.text
    rule_a = resp.json()["rule"]
    assert rule_a["factory_id"] == a  # a machine's rule belongs to the machine's factory

    # Readings of A's machine until the running alerter, once it has loaded the rule (within
    # ALERTER_RULES_REFRESH_S), opens the rule's alert.
    def alerts_after_a_reading() -> list[dict[str, Any]]:
        at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        batch = {"machine_id": machine_a, "readings": [{"timestamp": at, "temperature": 20.0}]}
        post_batch(urls, admin, [batch])
        found = httpx.get(
            f"{q}/api/v1/alerts", params={"rule_id": rule_a["id"]}, headers=admin, timeout=10
        )
        return list(found.json()["alerts"])

    alerts = poll(alerts_after_a_reading, bool, timeout=30)
    assert alerts[0]["factory_id"] == a  # recorded under the machine's registered factory
    return Plant(a, b, location, machine_a, machine_b, rule_a, int(alerts[0]["id"]))


def _expect(c: Caller, permission: str, factory: str, ok: int, hidden: int = 404) -> int:
    """What ``c`` gets asking for something of ``factory`` that needs ``permission``: 403 without
    the permission, ``hidden`` (404: as unknown) outside its factories, ``ok`` otherwise."""
    if not c.may(permission):
        return 403
    return ok if c.sees(factory) else hidden


def _checks(
    c: Caller, p: Plant, q: str, admin: dict[str, str]
) -> list[tuple[str, httpx.Response, int]]:
    """(what, answer, expected status) for one caller (``admin`` makes a machine it may delete)."""
    h, a = c.headers, p.a

    def get(path: str, **params: str) -> httpx.Response:
        return httpx.get(q + path, params=params, headers=h, timeout=10)

    tmp = _machine(q, admin, a, p.location + " tmp")
    new = {"name": "N", "location": p.location + " new", "sensor_type": "T", "factory_id": a}
    live = {**h, "Accept": "text/event-stream"}
    return [
        (
            "GET machine A",
            get(f"/api/v1/machines/{p.machine_a}"),
            _expect(c, "read:machines", a, 200),
        ),
        (
            "GET machines ?factory_id=A",
            get("/api/v1/machines", factory_id=a),
            _expect(c, "read:machines", a, 200, 403),
        ),
        (
            "POST machine in A",
            cleanup.created(httpx.post(f"{q}/api/v1/machines", json=new, headers=h, timeout=10)),
            _expect(c, "write:machines", a, 201, 403),
        ),
        (
            "PATCH machine A",
            httpx.patch(
                f"{q}/api/v1/machines/{p.machine_a}",
                json={"status": "active"},
                headers=h,
                timeout=10,
            ),
            _expect(c, "write:machines", a, 200),
        ),
        (
            "DELETE a machine of A",
            httpx.delete(f"{q}/api/v1/machines/{tmp}", headers=h, timeout=10),
            _expect(c, "delete:machines", a, 204),
        ),
        (
            "GET history of A",
            get(f"/api/v1/data/machine/{p.machine_a}"),
            _expect(c, "read:sensor_data", a, 200),
        ),
        (
            "GET summary ?factory_id=A",
            get("/api/v1/data/summary", location=p.location, factory_id=a),
            _expect(c, "read:sensor_data", a, 200, 403),
        ),
        (
            "GET status ?factory_id=A",
            get("/api/v1/machines/status", factory_id=a),
            _expect(c, "read:machines", a, 200, 403),
        ),
        ("GET alert of A", get(f"/api/v1/alerts/{p.alert_a}"), _expect(c, "read:alerts", a, 200)),
        (
            "GET alerts ?factory_id=A",
            get("/api/v1/alerts", factory_id=a),
            _expect(c, "read:alerts", a, 200, 403),
        ),
        (
            "PUT rule of A",
            httpx.put(
                f"{q}/api/v1/alerts/rules/{p.rule_a['id']}",
                json=_rule_body(p.rule_a),
                headers=h,
                timeout=10,
            ),
            _expect(c, "write:alert_rules", a, 200),
        ),
        (
            "GET dead letters ?factory_id=A",
            get("/api/v1/deadletters", factory_id=a),
            _expect(c, "read:config", a, 200, 403),
        ),
        (
            "POST config update (every factory)",
            httpx.post(f"{q}/api/v1/config/update", json={}, headers=h, timeout=10),
            _expect(c, "write:config", "*", 400, 403),
        ),
        (
            "GET audit (every factory)",
            get("/api/v1/audit"),
            _expect(c, "read:users", "*", 200, 403),
        ),
        (
            "GET live ?factory=A",
            call(f"{q}/api/v1/live?factory={a}", "GET", live),
            _expect(c, "read:sensor_data", a, 200, 403),
        ),
    ]


def _rule_body(rule: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "field", "comparison", "threshold", "scope_type", "scope_value", "factory_id")
    return {k: rule[k] for k in keys}


def _lists(c: Caller, p: Plant, q: str) -> list[str]:
    """Lists hold exactly the caller's factories' machines, alerts and rules."""
    failures = []
    h = c.headers
    expected = {m for m, f in ((p.machine_a, p.a), (p.machine_b, p.b)) if c.sees(f)}
    lists = {
        "machines": ("/api/v1/machines", "read:machines", "machines", "id"),
        "status": ("/api/v1/machines/status", "read:machines", "machines", "machine_id"),
        "summary": ("/api/v1/data/summary", "read:sensor_data", "machines", "machine_id"),
    }
    for name, (path, permission, key, field) in lists.items():
        if not c.may(permission):
            continue
        resp = httpx.get(q + path, params={"location": p.location}, headers=h, timeout=10)
        got = {row[field] for row in resp.json()[key]}
        if got != expected:
            failures.append(f"{c.name}: {name} lists {got}, expected {expected}")
    if c.may("read:alerts"):
        rules = httpx.get(f"{q}/api/v1/alerts/rules", headers=h, timeout=10).json()["rules"]
        if (p.rule_a["id"] in {r["id"] for r in rules}) != c.sees(p.a):
            failures.append(f"{c.name}: rule of A listed = {not c.sees(p.a)}")
        alerts = httpx.get(
            f"{q}/api/v1/alerts", params={"rule_id": p.rule_a["id"]}, headers=h, timeout=10
        ).json()["alerts"]
        if bool(alerts) != c.sees(p.a):
            failures.append(f"{c.name}: alert of A listed = {bool(alerts)}")
        if not c.sees(p.a):
            resp = httpx.post(
                f"{q}/api/v1/alerts/{p.alert_a}/acknowledge", json={}, headers=h, timeout=10
            )
            if resp.status_code != 404:
                failures.append(f"{c.name}: acknowledge alert of A → {resp.status_code}")
    return failures


def test_role_factory_endpoint_matrix(
    urls: dict[str, str],
    auth_headers: Callable[[str], dict[str, str]],
    token_for: Callable[..., str],
    gateway_token: str,
) -> None:
    admin = auth_headers("Management")  # every factory
    p = _plant(urls, admin)
    scopes: list[tuple[str, Role, tuple[str, ...] | None]] = [
        (f"{role.value} of {name}", role, (factory,))
        for name, factory in (("A", p.a), ("B", p.b))
        for role in (Role.OPERATOR, Role.SUPERVISOR, Role.MANAGEMENT)
    ]
    scopes += [
        ("Management of A and B", Role.MANAGEMENT, (p.a, p.b)),
        ("Supervisor of every factory", Role.SUPERVISOR, None),
    ]
    # Users are made through the admin CLI (a process and a password hash each): at once.
    with ThreadPoolExecutor(len(scopes)) as pool:
        made = pool.map(lambda sc: token_for(sc[1].value, *(sc[2] or ())), scopes)
        callers = [
            Caller(*sc, {"Authorization": f"Bearer {token}"})
            for sc, token in zip(scopes, made, strict=True)
        ]
    callers += [
        Caller("Management of every factory", Role.MANAGEMENT, None, admin),
        Caller(
            "Gateway (default factory)",
            Role.GATEWAY,
            ("default",),
            {"Authorization": f"Bearer {gateway_token}"},
        ),
    ]
    failures: list[str] = []
    for c in callers:
        for what, resp, expected in _checks(c, p, urls["query_api"], admin):
            if resp.status_code != expected:
                failures.append(f"{c.name}: {what} → {resp.status_code}, expected {expected}")
        failures += _lists(c, p, urls["query_api"])
    assert not failures, "\n".join(failures)
