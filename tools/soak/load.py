"""The soak's load: workers on every door, each request checked against the answer it should get.

Every request knows, when it is sent and when its answer arrives, what its token is: valid for
sure, expired for sure, revoked before it was sent, signed by a key nobody publishes, malformed,
absent, or lacking the permission. Requests sent too close to an expiry or a revocation to say
are counted as "either" and may get the success answer or 401. Any 5xx, any transport error
outside auth's restart, and any answer that is not the expected one is a violation.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from services.auth.security.keys import KeySet, generate_private_key
from services.auth.tokens import TokenIssuer
from shared.auth.roles import PERMISSIONS, Role
from tools.soak.stack import PrivateStack

MARGIN_S = 0.5  # either side of an expiry: too close to call


@dataclass
class Token:
    token: str
    exp: int
    source: str  # "minted" | "login"
    revoked_at: float | None = None
    revoking: bool = False


@dataclass
class Request:
    door: str
    scenario: str
    method: str
    path: str
    token: Token | str | None  # a str is a token that can never be valid
    ok_status: int
    json: Any = None
    needs: str | None = None  # permission the token must carry
    has: frozenset[str] = frozenset()


@dataclass
class Outcome:
    counts: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0
    five_xx: int = 0
    transport_errors: int = 0
    issued: set[str] = field(default_factory=set)  # every token and secret of the run

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def violate(self, text: str) -> None:
        self.violation_count += 1
        if len(self.violations) < 20:
            self.violations.append(text)


def expected(req: Request, sent: float, received: float, leeway: int) -> str:
    """'ok' | '401…' (why) | '403' | 'either' (ok or 401) | 'either-403' (403 or 401)."""
    tok = req.token
    if not isinstance(tok, Token):
        return "401"
    if sent > tok.exp + leeway + MARGIN_S:
        return "401 expired"
    if tok.revoked_at is not None and tok.revoked_at < sent:
        return "401 revoked"
    sure = received < tok.exp + leeway - MARGIN_S and tok.revoked_at is None and not tok.revoking
    if req.needs is not None and req.needs not in req.has:
        return "403" if sure else "either-403"
    return "ok" if sure else "either"


def judge(req: Request, want: str, status: int) -> bool:
    if want == "ok":
        return status == req.ok_status
    if want == "either":
        return status in (req.ok_status, 401)
    if want == "either-403":
        return status in (403, 401)
    return status == int(want.split()[0])


class Tokens:
    """Short-lived tokens minted as auth mints them, a new one per role every ttl/3."""

    def __init__(self, stack: PrivateStack, ttl_s: int) -> None:
        self.stack = stack
        self.ttl_s = ttl_s
        self.issuer = stack.issuer()
        settings = stack.jwt_settings()
        self.foreign = TokenIssuer(
            KeySet.of(generate_private_key()), settings.issuer, settings.audience
        )
        self.minted: dict[str, list[Token]] = {}
        self.logins: list[Token] = []
        self.issued: set[str] = set()

    def mint(self, role: str, permissions: list[str] | None = None) -> Token:
        perms = PERMISSIONS[Role(role)] if permissions is None else permissions
        m = self.issuer.mint(
            sub=str(uuid.uuid4()),
            username=f"soak-{role.lower()}",
            role=role,
            permissions=perms,
            ttl_s=self.ttl_s,
        )
        self.issued.add(m.token)
        return Token(m.token, m.expires_at, "minted")

    def renew(self) -> None:
        now = time.time()
        for role in ("Operator", "Supervisor"):
            pool = self.minted.setdefault(role, [])
            pool.append(self.mint(role))
            pool[:] = [t for t in pool if t.exp > now - 4]

    def pick(self, role: str) -> Token:
        return random.choice(self.minted[role])

    def foreign_token(self) -> str:
        return self.foreign.mint(
            sub=str(uuid.uuid4()),
            username="intruder",
            role="Management",
            permissions=PERMISSIONS[Role.MANAGEMENT],
            ttl_s=600,
        ).token


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def ingest_body(machine_id: str, valid: bool = True) -> dict[str, Any]:
    reading: dict[str, Any] = {
        "timestamp": _iso_now(),
        "temperature": round(random.uniform(20, 90), 2),
    }
    if not valid:
        reading["timestamp"] = "2025-13-45"
    return {
        "gateway_id": "soak",
        "timestamp": _iso_now(),
        "batch": [
            {
                "machine_id": machine_id,
                "sensor_type": "Temperature",
                "location": "Soak",
                "readings": [reading],
            }
        ],
    }


Scenarios = list[tuple[int, Callable[[], Request]]]
INGEST = "/api/v1/data/ingest"
WRITE = "write:sensor_data"
# A token that looks like a JWT but can never be valid.
MALFORMED_TOKEN = "eyJhbGciOiJSUzI1NiJ9.bm90LWpzb24.c2ln"


def scenarios(tokens: Tokens, machine_id: str) -> Scenarios:
    """(weight, builder) pairs: what a mixed population of clients sends."""
    return [
        *ingest_scenarios(tokens, machine_id),
        *query_scenarios(tokens, machine_id),
        *auth_scenarios(tokens),
    ]


def ingest_scenarios(tokens: Tokens, machine_id: str) -> Scenarios:
    operator = frozenset(PERMISSIONS[Role.OPERATOR])
    readonly = ["read:machines", "read:sensor_data"]

    def ingest_ok() -> Request:
        body = ingest_body(machine_id)
        return Request(
            "ingest",
            "valid reading",
            "POST",
            INGEST,
            tokens.pick("Operator"),
            202,
            body,
            WRITE,
            operator,
        )

    def ingest_bad_body() -> Request:
        body = ingest_body(machine_id, valid=False)
        return Request(
            "ingest",
            "invalid reading",
            "POST",
            INGEST,
            tokens.pick("Operator"),
            400,
            body,
            WRITE,
            operator,
        )

    def ingest_readonly() -> Request:
        tok = tokens.mint("Operator", readonly)
        body = ingest_body(machine_id)
        return Request(
            "ingest",
            "no write permission",
            "POST",
            INGEST,
            tok,
            202,
            body,
            WRITE,
            frozenset(readonly),
        )

    def ingest_foreign() -> Request:
        tok = tokens.foreign_token()
        return Request(
            "ingest", "unknown signing key", "POST", INGEST, tok, 202, ingest_body(machine_id)
        )

    def ingest_malformed() -> Request:
        tok = MALFORMED_TOKEN
        return Request(
            "ingest", "malformed token", "POST", INGEST, tok, 202, ingest_body(machine_id)
        )

    def ingest_missing() -> Request:
        return Request("ingest", "no token", "POST", INGEST, None, 202, ingest_body(machine_id))

    return [
        (30, ingest_ok),
        (6, ingest_bad_body),
        (3, ingest_readonly),
        (2, ingest_foreign),
        (2, ingest_malformed),
        (2, ingest_missing),
    ]


def query_scenarios(tokens: Tokens, machine_id: str) -> Scenarios:
    operator = frozenset(PERMISSIONS[Role.OPERATOR])

    def history() -> Request:
        path = f"/api/v1/data/machine/{machine_id}?limit=5"
        return Request(
            "query",
            "history",
            "GET",
            path,
            tokens.pick("Operator"),
            200,
            None,
            "read:sensor_data",
            operator,
        )

    def machines() -> Request:
        path = "/api/v1/machines?limit=5"
        return Request(
            "query",
            "machines",
            "GET",
            path,
            tokens.pick("Supervisor"),
            200,
            None,
            "read:machines",
            frozenset(PERMISSIONS[Role.SUPERVISOR]),
        )

    def delete_as_operator() -> Request:
        path = f"/api/v1/machines/{machine_id}"
        return Request(
            "query",
            "delete without permission",
            "DELETE",
            path,
            tokens.pick("Operator"),
            204,
            None,
            "delete:machines",
            operator,
        )

    def query_foreign() -> Request:
        return Request(
            "query", "unknown signing key", "GET", "/api/v1/machines", tokens.foreign_token(), 200
        )

    return [(20, history), (8, machines), (3, delete_as_operator), (2, query_foreign)]


def auth_scenarios(tokens: Tokens) -> Scenarios:
    operator = frozenset(PERMISSIONS[Role.OPERATOR])

    def me() -> Request:
        live = [t for t in tokens.logins if t.revoked_at is None]
        tok = random.choice(live or tokens.logins)
        return Request("auth", "me", "GET", "/api/v1/auth/me", tok, 200, None, None, operator)

    def me_foreign() -> Request:
        return Request(
            "auth", "me, unknown signing key", "GET", "/api/v1/auth/me", tokens.foreign_token(), 200
        )

    return [(8, me), (2, me_foreign)]


class Pacer:
    """At most ``rate`` requests a second across all workers (0: as fast as they go)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(self.next, now)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)  # pacing the offered load, not waiting for a state


async def run_load(
    stack: PrivateStack,
    tokens: Tokens,
    machine_id: str,
    *,
    duration_s: float,
    connections: int,
    rate: float,
    auth_restarting: asyncio.Event,
    outcome: Outcome,
) -> None:
    """``connections`` workers per door until ``duration_s`` has passed."""
    doors = {
        "ingest": stack.url("ingest_gateway"),
        "query": stack.url("query_api"),
        "auth": stack.url("auth"),
    }
    clients = {
        door: httpx.AsyncClient(
            base_url=url,
            timeout=30.0,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        for door, url in doors.items()
    }
    by_door: dict[str, list[tuple[int, Callable[[], Request]]]] = {}
    for w, b in scenarios(tokens, machine_id):
        by_door.setdefault(b().door, []).append((w, b))
    pacer = Pacer(rate)
    deadline = time.monotonic() + duration_s
    leeway = stack.leeway_s

    async def worker(door: str) -> None:
        options = by_door[door]
        while time.monotonic() < deadline:
            await pacer.wait()
            req = random.choices([b for _, b in options], [w for w, _ in options])[0]()
            headers = {}
            raw = req.token.token if isinstance(req.token, Token) else req.token
            if raw is not None:
                headers["Authorization"] = f"Bearer {raw}"
            restarting = auth_restarting.is_set()
            sent = time.time()
            try:
                resp = await clients[door].request(
                    req.method, req.path, json=req.json, headers=headers
                )
            except httpx.TransportError as e:
                if door == "auth" and (restarting or auth_restarting.is_set()):
                    outcome.counts[(door, req.scenario, "auth restarting", type(e).__name__)] += 1
                    continue
                outcome.transport_errors += 1
                outcome.violate(f"{door} {req.scenario}: {type(e).__name__}")
                continue
            received = time.time()
            want = expected(req, sent, received, leeway)
            status = resp.status_code
            outcome.counts[(door, req.scenario, want, str(status))] += 1
            if status >= 500:
                outcome.five_xx += 1
                outcome.violate(f"{door} {req.scenario}: {status} {resp.text[:200]}")
            elif not judge(req, want, status):
                outcome.violate(
                    f"{door} {req.scenario}: expected {want}, got {status} {resp.text[:200]}"
                )

    try:
        await asyncio.gather(*(worker(door) for door in doors for _ in range(connections)))
    finally:
        for client in clients.values():
            await client.aclose()
