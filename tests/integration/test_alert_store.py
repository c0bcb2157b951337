"""The alerter against the real PostgreSQL: one alert per episode whatever is delivered again,
and signed webhooks retried with backoff, every attempt logged."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from services.alerter.evaluation import RuleEvaluation
from services.alerter.notify import Notifier
from services.alerter.rules import Action, Evaluator, Rule
from services.alerter.settings import AlerterOptions, Settings
from services.alerter.store import AlertStore
from shared.db import create_pool, migrate
from shared.machines import MachineCache, MachineRepository
from shared.settings import PostgresSettings

pytestmark = pytest.mark.integration
S = 1_000_000_000


@pytest.fixture
async def store(postgres_settings: PostgresSettings) -> AsyncIterator[AlertStore]:
    pool: AsyncConnectionPool = create_pool(postgres_settings, "test-alerts")
    await pool.open(wait=True)
    await migrate(pool)
    try:
        yield AlertStore(pool)
    finally:
        await pool.close()


async def new_rule(store: AlertStore) -> Rule:
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO alert_rules (name, field, comparison, threshold, clear_threshold,"
            " severity, created_by) VALUES ('hot', 'temperature', '>', 80, 75, 'major', 'test')"
            " RETURNING id"
        )
        row = await cur.fetchone()
    assert row is not None
    return Rule(
        id=str(row[0]),
        name="hot",
        kind="threshold",
        severity="major",
        field="temperature",
        comparison=">",
        threshold=80.0,
        clear_threshold=75.0,
    )


def action(kind: str, rule: Rule, machine: str, t: int, started: int, value: float) -> Action:
    return Action(
        kind, rule, {"machine_id": machine, "ts": t * S, "location": "L"}, value, started * S
    )


async def test_one_alert_per_episode_whatever_is_delivered_again(store: AlertStore) -> None:
    rule, machine = await new_rule(store), str(uuid.uuid4())
    first = await store.open(action("open", rule, machine, 100, 90, 85.0))
    assert first is not None and first["state"] == "active"
    # The same crossing again (a replica after a fail-over, a re-delivered message).
    assert await store.open(action("open", rule, machine, 100, 90, 85.0)) is None
    cleared = await store.clear(action("clear", rule, machine, 200, 200, 70.0))
    assert cleared is not None and cleared["cleared_by"] == "alerter"
    assert await store.clear(action("clear", rule, machine, 200, 200, 70.0)) is None
    # A hot reading from inside the finished episode, delivered late: nothing new.
    assert await store.open(action("open", rule, machine, 150, 95, 90.0)) is None
    # A new episode after the clear: a new alert.
    second = await store.open(action("open", rule, machine, 300, 290, 88.0))
    assert second is not None and second["id"] != first["id"]


class Hook(BaseHTTPRequestHandler):
    received: list[tuple[bytes, dict[str, str]]] = []
    fail_first = 2

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((body, dict(self.headers)))
        status = 500 if len(Hook.received) <= Hook.fail_first else 204
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_url() -> Iterator[str]:
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()


async def test_webhook_is_signed_retried_and_every_attempt_logged(
    store: AlertStore, hook_url: str
) -> None:
    settings = Settings(
        alerter=AlerterOptions(
            webhook_urls=hook_url,
            webhook_secret=SecretStr("test-signing-key"),
            webhook_attempts=4,
            webhook_backoff_max_s=0.2,
        )
    )
    notifier = Notifier(settings, connection=None, store=store)  # type: ignore[arg-type]
    alert_id = int(time.time_ns() % 10**12)
    started = time.monotonic()
    await notifier.deliver_webhook(hook_url, "opened", {"id": alert_id, "machine_id": "m"})
    await notifier.http.aclose()
    assert time.monotonic() - started < 5
    assert len(Hook.received) == 3  # 500, 500, then 204
    for body, headers in Hook.received:
        expected = hmac.new(b"test-signing-key", body, hashlib.sha256).hexdigest()
        assert headers["X-Millrace-Signature"] == f"sha256={expected}"
        assert headers["X-Millrace-Event"] == "alert.opened"
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT attempt, ok, status_code FROM alert_deliveries WHERE alert_id = %s"
            " ORDER BY attempt",
            (alert_id,),
        )
        rows = await cur.fetchall()
    assert rows == [(1, False, 500), (2, False, 500), (3, True, 204)]


async def test_alerts_record_the_machine_s_registered_factory(store: AlertStore) -> None:
    """A reading claiming another factory is judged, and its alert recorded, under the factory
    its machine is registered in."""
    repo = MachineRepository(store.pool)
    plant = f"plant-{uuid.uuid4().hex[:6]}"
    machine = await repo.create("Oven", "Hall 1", "Temperature", "active", plant)
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO alert_rules (name, field, comparison, threshold, severity, factory_id,"
            " created_by) VALUES ('hot here', 'temperature', '>', 80, 'major', %s, 'test'),"
            " ('hot elsewhere', 'temperature', '>', 80, 'major', 'elsewhere', 'test')"
            " RETURNING id",
            (plant,),
        )
        here, elsewhere = [str(r[0]) for r in await cur.fetchall()]
    rules = [r for r in await store.rules() if r.id in (here, elsewhere)]
    assert {r.factory_id for r in rules} == {plant, "elsewhere"}
    evaluation = RuleEvaluation(
        Settings(),
        None,
        store,
        Evaluator(),
        MachineCache(repo, None),  # type: ignore[arg-type]
    )
    evaluation.evaluator.set_rules(rules)
    claimed = {
        "machine_id": machine.id,
        "factory_id": "elsewhere",  # what the sender said
        "location": "Hall 1",
        "ts": time.time_ns(),
        "fields": {"temperature": 95.0},
    }
    unknown = {**claimed, "machine_id": str(uuid.uuid4())}
    judged = await evaluation.registered([claimed, unknown])
    assert {(r["machine_id"], r["factory_id"]) for r in judged} == {
        (machine.id, plant),
        (unknown["machine_id"], None),
    }
    actions = [a for r in judged for a in evaluation.evaluator.evaluate(r)]
    assert [(a.rule.id, a.reading["machine_id"]) for a in actions] == [(here, machine.id)]
    alert = await store.open(actions[0])
    assert alert is not None and alert["factory_id"] == plant
    swept = {m["machine_id"]: m for m in await store.machines()}
    assert swept[machine.id]["factory_id"] == plant
