"""Bad input at volume over HTTP: each service's ``/openapi.json`` is a valid OpenAPI 3.1
document, and schemathesis, generating valid and invalid requests from it, never gets a 5xx.

Three services (ingest_gateway, query_api, auth), each fuzzed twice: with the bearer token of a
Management user (every permission, so the handlers behind the permission check are reached) and
without credentials. Every response must be < 500 (``not_a_server_error``: a failure here is a
bug in a service, shrunk to a minimal request by Hypothesis). The response conformance checks
(status code, content type, headers, body schema) run on every response too; their mismatches
are collected and reported by ``test_responses_conform_to_the_documents`` at the end, so one
documentation gap does not hide a crash.

Case counts: ``SCHEMATHESIS_MAX_EXAMPLES`` generated cases per operation and mode (default 10
in ``make test``, plus schemathesis' deterministic coverage cases), and at least
``SCHEMATHESIS_MIN_CASES`` requests (default 5) sent to every documented operation in every mode
that fuzzes it (1 for an operation that takes no input at all: nothing to vary):
``test_enough_cases_per_operation`` fails otherwise, so an operation the
generator cannot reach (or a document that lists none) does not pass unnoticed. The run that
backs the ">= 1,000 cases per service" claim, with its per-service totals printed at the end::

    set -a; . .run/env; set +a
    SCHEMATHESIS_MAX_EXAMPLES=1000 SCHEMATHESIS_MIN_CASES=100 \\
        .venv/bin/pytest tests/e2e/test_fuzz_openapi.py --timeout 0

A document that cannot be loaded fails the run at collection: nothing is fuzzed against a
stand-in.

Destructive operations and scoped data. The fuzzer acts as its own Management user (created
through the admin CLI), never the shared development users, and every operation that changes or
removes something only ever reaches data this module created:

- ``DELETE``/``PATCH /api/v1/machines/{id}``, ``PATCH``/``DELETE /api/v1/auth/users/{id}`` and
  ``POST /api/v1/auth/gateways/{id}/disable``: some generated path ids are swapped for ids of a
  pool of machines, users and gateways created for this run (so the success paths run too); any
  other id is used only after checking that it names nothing that exists (else the case is
  rejected). Random ids never exist in practice; the check makes it certain.
- ``POST /api/v1/machines``, ``/api/v1/auth/users`` and ``/api/v1/auth/gateways`` create what
  the fuzzer sends; every 201 is recorded and removed at the end (machines deleted, users
  deactivated, gateways disabled: the API has no hard delete for the last two). When the run
  ends, the users, gateways and the machines' alerts go for good (``tests/e2e/cleanup.py``).
- ``POST /api/v1/config/update``: no delete exists for settings, so generated setting names are
  prefixed ``fuzz.`` and never overwrite a real setting.
- ``POST /api/v1/data/ingest``: one machine in three of a generated batch is swapped for a pool
  machine and its readings made acceptable (a recent timestamp, the plausible generated values),
  so that the path behind validation (registry, broker, InfluxDB) is fuzzed too; readings are
  only ever stored under machines of this run (InfluxDB keeps them after the machines go).
- ``POST /api/v1/auth/logout`` is excluded from the Management run (it would revoke the token
  every later case uses) and fuzzed by its own test, each case with a fresh session of a
  throwaway Operator.
- ``POST /api/v1/auth/login`` and ``/token`` count failures per client address (429 after 5):
  on a loopback service URL every auth request leaves from its own random 127.x.y.z source
  address, so the fuzzer neither throttles itself nor the other tests' logins from 127.0.0.1.
- ``POST /api/v1/deadletters/replay`` and ``/purge`` are excluded from the Management run:
  they act on the one shared dead-letter queue (other tests and the chaos harness count on it)
  and no request can be confined to this run's letters. They are fuzzed without credentials.
- Writes under ``/api/v1/alerts`` (rules, acknowledge, clear) are excluded from the Management
  run for the same reason: a rule applies to the whole plant and an action to a real alert.
  They are fuzzed without credentials; the alert tests exercise them with their own rules.
- Signing-key rotation has no HTTP operation (admin CLI only).

Any 5xx fails, whatever the request carried (NUL characters included) and whatever it was: the
tests that stop a dependency are marked ``disruptive`` and run after every other test, so while
this module runs every dependency is up and a 503 is a bug too. Hypothesis' health checks stay on,
except the one about slow data generation (every case is a network round trip).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, reject, settings
from requests.adapters import HTTPAdapter
from schemathesis.checks import load_all_checks

from shared.readings import BUILTIN_FIELDS
from tests.e2e import cleanup
from tests.e2e.pipeline import create_user, service_url

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))
MIN_CASES = int(os.environ.get("SCHEMATHESIS_MIN_CASES", "5"))
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TIMEOUT_S = 30.0

load_all_checks()
_CHECKS = schemathesis.checks
NO_5XX = [_CHECKS.not_a_server_error]
CONFORMANCE = [
    _CHECKS.status_code_conformance,
    _CHECKS.content_type_conformance,
    _CHECKS.response_headers_conformance,
    _CHECKS.response_schema_conformance,
]

# Requests sent, by (service, mode) and by (service, mode, operation); conformance mismatches by
# (service, operation, status).
CASES: Counter[tuple[str, str]] = Counter()
OPERATION_CASES: Counter[tuple[str, str, str]] = Counter()
STATUSES: Counter[tuple[str, str, int]] = Counter()
MISMATCHES: dict[tuple[str, str, int], set[str]] = defaultdict(set)
# Documentation gaps found and reported (shared/openapi.py documents 400 only for operations
# with a body or query model, and 415 only where an endpoint declares it). Printed on every run;
# any mismatch not listed here fails test_responses_conform_to_the_documents.
KNOWN_MISMATCHES = {
    ("query_api", "GET /api/v1/machines/{machine_id}", 400): "malformed UUID in the path",
    ("query_api", "DELETE /api/v1/machines/{machine_id}", 400): "malformed UUID in the path",
    ("query_api", "GET /api/v1/alerts/{alert_id}", 400): "malformed UUID in the path",
    ("query_api", "DELETE /api/v1/alerts/rules/{rule_id}", 400): "malformed UUID in the path",
    ("query_api", "POST /api/v1/config/update", 415): "body that is not JSON",
}
_LOCK = threading.Lock()


# --------------------------------------------------------------------------- documents


@pytest.mark.parametrize("service", ["ingest_gateway", "query_api", "auth"])
def test_openapi_document_is_valid(urls: dict[str, str], service: str) -> None:
    """OpenAPI 3.1 meta-schema (schemathesis' validator), every embedded schema against the
    JSON Schema 2020-12 meta-schema, every ``$ref`` resolvable, path templates and declared
    path parameters in agreement, every secured operation naming a declared scheme."""
    resp = httpx.get(f"{urls[service]}/openapi.json", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    document = resp.json()
    assert document["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(document).validate()

    schemas = document.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        jsonschema_rs.meta.validate(schema)
        assert name.replace("_", "").replace("-", "").isalnum(), name
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, f"dangling $ref {ref}"
    schemes = set(document.get("components", {}).get("securitySchemes", {}))
    assert document["paths"], "no operations documented"
    for path, item in document["paths"].items():
        templated = {p[1:-1] for p in path.split("/") if p.startswith("{") and p.endswith("}")}
        for method, op in item.items():
            label = f"{method.upper()} {path}"
            params = op.get("parameters", [])
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == templated, f"{label}: path parameters {declared} != {templated}"
            assert all(p["required"] for p in params if p["in"] == "path"), label
            for p in params:
                jsonschema_rs.meta.validate(p["schema"])
            assert op["responses"], f"{label}: no responses"
            for status in op["responses"]:
                assert status.isdigit() and 100 <= int(status) < 600, f"{label}: {status}"
            for requirement in op.get("security", []):
                assert set(requirement) <= schemes, f"{label}: unknown scheme {requirement}"
            if "x-required-permission" in op:
                assert {"401", "403"} <= set(op["responses"]), f"{label}: 401/403 undocumented"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


# --------------------------------------------------------------------------- fixtures


def _load(service: str, port: int) -> schemathesis.BaseSchema:
    """The live document (loaded at collection: schemathesis' lazy ``from_fixture`` loader does
    not work with pytest 9.2). A service that is down, or a document schemathesis cannot read,
    fails the collection of this module: the run fails, loudly."""
    schema = schemathesis.openapi.from_url(f"{service_url(service, port)}/openapi.json", timeout=10)
    # A live stream (server-sent events) never ends: its first event is its answer.
    schema.config.max_stream_events = 1
    return schema


class _SourceAddress(HTTPAdapter):
    """Connections leave from a given local address (a loopback alias: 127.0.0.0/8)."""

    def __init__(self, address: str) -> None:
        self._address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._address, 0)
        super().init_poolmanager(*args, **kwargs)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback and ipaddress.ip_address(host).version == 4
    except ValueError:
        return False


@dataclass
class Fuzzer:
    """State of one fuzzing run: the Management identity, the scoped data pools, and what the
    fuzzer created (removed at the end)."""

    urls: dict[str, str]
    username: str
    password: str
    token: str = ""
    token_at: float = 0.0
    machines: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    gateways: list[str] = field(default_factory=list)
    created_machines: set[str] = field(default_factory=set)
    created_users: set[str] = field(default_factory=set)
    created_gateways: set[str] = field(default_factory=set)
    own_user_id: str = ""

    def headers(self) -> dict[str, str]:
        # Access tokens live 15 minutes; a long run logs in again well before that.
        if not self.token or time.monotonic() - self.token_at > 600:
            resp = requests.post(
                f"{self.urls['auth']}/api/v1/auth/login",
                json={"username": self.username, "password": self.password},
                timeout=TIMEOUT_S,
            )
            assert resp.status_code == 200, resp.text
            self.token = resp.json()["access_token"]
            self.own_user_id = resp.json()["user"]["id"]
            self.token_at = time.monotonic()
        return {"Authorization": f"Bearer {self.token}"}

    def api(self, service: str, method: str, path: str, **kw: Any) -> requests.Response:
        # A connection per request: a pooled one may have been closed by the server meanwhile.
        return requests.request(
            method,
            f"{self.urls[service]}{path}",
            headers=self.headers(),
            timeout=TIMEOUT_S,
            **kw,
        )

    def session_for(self, service: str) -> requests.Session:
        """A session per request; for auth on loopback, from a fresh 127.x.y.z address."""
        s = requests.Session()
        if service == "auth" and _is_loopback(self.urls["auth"]):
            a, b, c = secrets.token_bytes(3)
            s.mount("http://", _SourceAddress(f"127.{a}.{b}.{max(c, 2)}"))
        return s


@pytest.fixture(scope="module")
def fuzzer(urls: dict[str, str]) -> Iterator[Fuzzer]:
    username, password = create_user("Management")
    fz = Fuzzer(urls, username, password)
    run = uuid.uuid4().hex[:8]
    for i in range(6):
        resp = fz.api(
            "query_api",
            "POST",
            "/api/v1/machines",
            json={"name": f"fuzz-{run}-{i}", "location": f"Fuzz {run}", "sensor_type": "Fuzz"},
        )
        assert resp.status_code == 201, resp.text
        cleanup.record(resp.json())
        fz.machines.append(resp.json()["machine"]["id"])
    for i in range(3):
        resp = fz.api(
            "auth",
            "POST",
            "/api/v1/auth/users",
            json={
                "username": f"fuzz-{run}-{i}",
                "password": secrets.token_urlsafe(16),
                "role": "Operator",
            },
        )
        assert resp.status_code == 201, resp.text
        cleanup.record(resp.json())
        fz.users.append(resp.json()["user"]["id"])
        resp = fz.api(
            "auth", "POST", "/api/v1/auth/gateways", json={"gateway_id": f"fuzz-{run}-{i}"}
        )
        assert resp.status_code == 201, resp.text
        cleanup.record(resp.json())
        fz.gateways.append(resp.json()["gateway"]["gateway_id"])
    fz.created_machines.update(fz.machines)
    fz.created_users.update(fz.users)
    fz.created_gateways.update(fz.gateways)
    yield fz
    for mid in sorted(fz.created_machines):
        fz.api("query_api", "DELETE", f"/api/v1/machines/{mid}")
    for uid in sorted(fz.created_users):
        fz.api("auth", "DELETE", f"/api/v1/auth/users/{uid}")
    for gid in sorted(fz.created_gateways):
        fz.api("auth", "POST", f"/api/v1/auth/gateways/{gid}/disable")


@pytest.fixture(scope="module", autouse=True)
def case_summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not CASES:
        return
    reporter.write_line("")
    reporter.write_line(f"schemathesis requests (max_examples={MAX_EXAMPLES} per operation):")
    for service in ("ingest_gateway", "query_api", "auth"):
        for mode in ("management", "anonymous", "logout"):
            if not CASES[(service, mode)]:
                continue
            statuses = {
                st: n for (sv, md, st), n in sorted(STATUSES.items()) if (sv, md) == (service, mode)
            }
            reporter.write_line(f"  {service:15} {mode:10} {CASES[(service, mode)]:6}  {statuses}")
    fewest = min(OPERATION_CASES.items(), key=lambda kv: kv[1], default=None)
    if fewest is not None:
        reporter.write_line(f"  fewest requests: {fewest[1]} to {' '.join(fewest[0])}")
    for (service, op, status), why in sorted(KNOWN_MISMATCHES.items()):
        if (service, op, status) in MISMATCHES:
            reporter.write_line(f"  known doc gap: {service} {op} answers {status} ({why})")


# --------------------------------------------------------------------------- scoping


def _pick(value: Any, pool: list[str]) -> str | None:
    """Deterministically (so Hypothesis can replay a case) swap one in three values for a pool
    id; None keeps the generated value."""
    if not pool:
        return None
    digest = int(hashlib.sha256(repr(value).encode()).hexdigest(), 16)
    return pool[digest // 3 % len(pool)] if digest % 3 == 0 else None


def _exists(fz: Fuzzer, service: str, path: str) -> bool:
    return fz.api(service, "GET", path).status_code == 200


_DESTRUCTIVE = {
    ("DELETE", "/api/v1/machines/{machine_id}"),
    ("PATCH", "/api/v1/machines/{machine_id}"),
    ("PATCH", "/api/v1/auth/users/{user_id}"),
    ("DELETE", "/api/v1/auth/users/{user_id}"),
    ("POST", "/api/v1/auth/gateways/{gateway_id}/disable"),
}


def _scope(case: schemathesis.Case, fz: Fuzzer) -> None:
    """Point the case at this run's data (see the module docstring); reject it if it would
    change anything else."""
    op = (case.method.upper(), case.path)
    params = case.path_parameters or {}
    for name, pool in (
        ("machine_id", fz.machines),
        ("user_id", fz.users),
        ("gateway_id", fz.gateways),
    ):
        if name in params and (swap := _pick(params[name], pool)) is not None:
            params[name] = swap
    if op in _DESTRUCTIVE:
        target = str(next(iter(params.values())))
        if "machine_id" in params and target not in fz.created_machines:
            if _exists(fz, "query_api", f"/api/v1/machines/{_quote(target)}"):
                reject()
        elif "user_id" in params and target not in fz.created_users:
            if target == fz.own_user_id or _exists(
                fz, "auth", f"/api/v1/auth/users/{_quote(target)}"
            ):
                reject()
        elif "gateway_id" in params and target not in fz.created_gateways:
            listed = fz.api("auth", "GET", "/api/v1/auth/gateways?include_disabled=true")
            if target in {g["gateway_id"] for g in listed.json()["gateways"]}:
                reject()
    body = case.body
    config = op == ("POST", "/api/v1/config/update") and isinstance(body, dict)
    if config and isinstance(body.get("setting_name"), str):
        body["setting_name"] = "fuzz." + body["setting_name"]
    if op == ("POST", "/api/v1/data/ingest") and isinstance(body, dict):
        batch = body.get("batch")
        for item in batch if isinstance(batch, list) else []:
            if (
                not isinstance(item, dict)
                or (swap := _pick(item.get("machine_id"), fz.machines)) is None
            ):
                continue
            # A pool machine with readings it can accept (a recent timestamp, the generated
            # built-in values that are plausible, else one): this is how the publishing path,
            # behind validation, gets fuzzed too (random text is never a recent ISO time).
            item["machine_id"] = swap
            readings = item.get("readings")
            for reading in readings if isinstance(readings, list) else []:
                if isinstance(reading, dict):
                    values = {k: v for k, v in reading.items() if _plausible(k, v)}
                    reading.clear()
                    reading.update(values or {"temperature": 21.5}, timestamp=_recent())


def _plausible(name: str, value: Any) -> bool:
    low, high = BUILTIN_FIELDS.get(name, (1.0, 0.0))
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def _recent() -> str:
    return (datetime.now(UTC) - timedelta(minutes=1)).isoformat()


def _quote(value: str) -> str:
    return requests.utils.quote(value, safe="")


def _record_created(case: schemathesis.Case, response: Any, fz: Fuzzer) -> None:
    if response.status_code != 201:
        return
    try:
        body = response.json()
    except ValueError:
        return
    if case.path in ("/api/v1/machines", "/api/v1/auth/users", "/api/v1/auth/gateways"):
        cleanup.record(body)  # and removed for good (users, gateways) when the run ends
    if case.path == "/api/v1/machines":
        fz.created_machines.add(body["machine"]["id"])
    elif case.path == "/api/v1/auth/users":
        fz.created_users.add(body["user"]["id"])
    elif case.path == "/api/v1/auth/gateways":
        fz.created_gateways.add(body["gateway"]["gateway_id"])


# --------------------------------------------------------------------------- the fuzzing


def _run(
    case: schemathesis.Case,
    service: str,
    mode: str,
    fz: Fuzzer,
    headers: dict[str, str] | None = None,
) -> None:
    if mode == "management":
        _scope(case, fz)
        headers = {**fz.headers(), **(headers or {})}
    elif case.headers:
        # Anonymous means no credentials, whatever the generator put in the header.
        case.headers.pop("Authorization", None)
        case.headers.pop("authorization", None)
    response = _call(case, service, mode, fz, headers)
    # Any 5xx fails here, and Hypothesis shrinks the request that caused it.
    case.validate_response(response, checks=NO_5XX, headers=headers)
    try:
        case.validate_response(response, checks=CONFORMANCE, headers=headers)
    except (AssertionError, BaseExceptionGroup) as e:
        failures = e.exceptions if isinstance(e, BaseExceptionGroup) else (e,)
        for failure in failures:
            title = getattr(failure, "title", type(failure).__name__)
            lines = [ln.strip() for ln in str(failure).strip().splitlines() if ln.strip()]
            detail = " / ".join(lines[1:3])[:200]
            key = (service, f"{case.method.upper()} {case.path}", response.status_code)
            MISMATCHES[key].add(f"{title}: {detail}")


def _call(
    case: schemathesis.Case,
    service: str,
    mode: str,
    fz: Fuzzer,
    headers: dict[str, str] | None,
) -> Any:
    session = fz.session_for(service)
    try:
        response = case.call(
            base_url=fz.urls[service], session=session, headers=headers, timeout=TIMEOUT_S
        )
    finally:
        session.close()
    with _LOCK:
        CASES[(service, mode)] += 1
        OPERATION_CASES[(service, mode, _label(case.operation))] += 1
        STATUSES[(service, mode, response.status_code)] += 1
    if mode == "management":
        _record_created(case, response, fz)
    return response


ingest = _load("ingest_gateway", 8001)
query = _load("query_api", 8002)
auth = _load("auth", 8003)
auth_but_logout = auth.exclude(method="POST", path="/api/v1/auth/logout")
# Dead-letter replay and purge act on the one shared dead-letter queue: nothing to scope them to.
# Alert rules and alert actions act on the live plant: a fuzzed rule scoped to every machine
# would raise alerts on all of them, and acknowledging or clearing would touch real alerts.
query_but_dead_letter_actions = query.exclude(
    method="POST", path_regex=r"^/api/v1/dead-?letters/(replay|purge)"
).exclude(method=["POST", "PUT", "PATCH", "DELETE"], path_regex=r"^/api/v1/alerts")


def _fuzz(schema: Any, service: str, mode: str) -> Callable[..., None]:
    """A test that sends ``schema``'s fuzzed cases to ``service`` as ``mode``."""

    @FUZZ
    @schema.parametrize()
    def test(case: schemathesis.Case, fuzzer: Fuzzer) -> None:
        _run(case, service, mode, fuzzer)

    return test


test_ingest_gateway_management = _fuzz(ingest, "ingest_gateway", "management")
test_ingest_gateway_anonymous = _fuzz(ingest, "ingest_gateway", "anonymous")
test_query_api_management = _fuzz(query_but_dead_letter_actions, "query_api", "management")
test_query_api_anonymous = _fuzz(query, "query_api", "anonymous")
test_auth_management = _fuzz(auth_but_logout, "auth", "management")
test_auth_anonymous = _fuzz(auth, "auth", "anonymous")


@pytest.fixture(scope="module")
def throwaway_login(fuzzer: Fuzzer) -> Callable[[], dict[str, str]]:
    """A fresh session of a throwaway Operator per call: logout may revoke it freely."""
    username, password = create_user("Operator")

    def login() -> dict[str, str]:
        resp = fuzzer.session_for("auth").post(
            f"{fuzzer.urls['auth']}/api/v1/auth/login",
            json={"username": username, "password": password},
            timeout=TIMEOUT_S,
        )
        assert resp.status_code == 200, resp.text
        return {"Authorization": f"Bearer {resp.json()['access_token']}"}

    return login


@FUZZ
@auth.include(method="POST", path="/api/v1/auth/logout").parametrize()
def test_auth_logout_own_session(
    case: schemathesis.Case, fuzzer: Fuzzer, throwaway_login: Callable[[], dict[str, str]]
) -> None:
    _run(case, "auth", "logout", fuzzer, headers=throwaway_login())


# --------------------------------------------------------------------------- fixed bugs


# NUL (U+0000) reaching PostgreSQL used to answer 500; psycopg.DataError now maps to 400.
def test_nul_characters_never_answer_5xx(fuzzer: Fuzzer) -> None:
    nul = "fuzz\x00nul"
    # (method, path, what carries the NUL) on the query API
    query_api: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/machines", {"json": {"name": nul, "location": "Fuzz", "sensor_type": "Fuzz"}}),
        ("GET", "/machines", {"params": {"location": nul}}),
        ("GET", "/machines/status", {"params": {"location": nul}}),
        ("GET", "/data/summary", {"params": {"location": nul}}),
        ("GET", "/config", {"params": {"name": nul}}),
        ("POST", "/config/update", {"json": {"setting_name": "fuzz.nul", "setting_value": nul}}),
        ("GET", "/audit", {"params": {"actor": nul}}),
    ]
    statuses = {
        f"{method} {path}": fuzzer.api("query_api", method, f"/api/v1{path}", **kw).status_code
        for method, path, kw in query_api
    }
    # auth's sign-in from fresh addresses (the login throttle must not answer instead)
    for path, body in [
        ("/login", {"username": nul, "password": "x"}),
        ("/token", {"grant_type": "client_credentials", "client_id": nul, "client_secret": "x"}),
    ]:
        url = f"{fuzzer.urls['auth']}/api/v1/auth{path}"
        answer = fuzzer.session_for("auth").post(url, json=body, timeout=TIMEOUT_S)
        statuses[f"POST /auth{path}"] = answer.status_code
    assert all(status < 500 for status in statuses.values()), statuses


# --------------------------------------------------------------------------- summaries


def test_responses_conform_to_the_documents() -> None:
    """Every response matched its operation's documented status codes, media type, headers
    and body schema (collected by the fuzz tests above), known gaps apart."""
    if not CASES:
        pytest.skip("the fuzz tests did not run")
    unknown = {key: msgs for key, msgs in MISMATCHES.items() if key not in KNOWN_MISMATCHES}
    report = "\n".join(
        f"{service} {op} -> {status}: {msg}"
        for (service, op, status), msgs in sorted(unknown.items())
        for msg in sorted(msgs)
    )
    assert not unknown, "responses that do not match the OpenAPI documents:\n" + report


def _label(operation: Any) -> str:
    """The documented operation a case belongs to (a case may be sent with another method, to
    check that the method is refused)."""
    return f"{operation.method.upper()} {operation.path}"


def _operations(schema: schemathesis.BaseSchema) -> dict[str, int]:
    """Each operation and the requests it must get: ``MIN_CASES``, or 1 when it takes no input
    at all (no parameter, no body: Hypothesis has nothing to vary and stops early)."""
    out = {}
    for result in schema.get_all_operations():
        op = result.ok()
        takes_input = any(
            len(c) for c in (op.path_parameters, op.query, op.headers, op.cookies)
        ) or bool(list(op.body))
        out[_label(op)] = MIN_CASES if takes_input else 1
    return out


# What each fuzz test above sends requests to, by (service, mode).
FUZZED = {
    ("ingest_gateway", "management"): ingest,
    ("ingest_gateway", "anonymous"): ingest,
    ("query_api", "management"): query_but_dead_letter_actions,
    ("query_api", "anonymous"): query,
    ("auth", "management"): auth_but_logout,
    ("auth", "anonymous"): auth,
    ("auth", "logout"): auth.include(method="POST", path="/api/v1/auth/logout"),
}


def test_enough_cases_per_operation() -> None:
    """Every operation of every document got at least ``MIN_CASES`` requests in every mode
    that was fuzzed (this test runs after the fuzz tests and reads their counts; a selection
    such as ``-k`` may leave modes out, not operations)."""
    ran = [(key, schema) for key, schema in FUZZED.items() if CASES[key]]
    assert ran, "no fuzz test ran before this one"
    assert all(_operations(schema) for _, schema in ran), "a document lists no operation"
    missing = {
        f"{service} {mode} {op}": (OPERATION_CASES[(service, mode, op)], needed)
        for (service, mode), schema in ran
        for op, needed in _operations(schema).items()
        if OPERATION_CASES[(service, mode, op)] < needed
    }
    assert not missing, f"(requests, needed) below the minimum: {missing}"
