"""The alerter process: health/ready/metrics over HTTP on ALERTER_PORT (8006); rule evaluation,
offline sweep and notifications run in the lifespan, so uvicorn's SIGTERM handling stops them."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any, TypedDict

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette

from services.alerter.evaluation import RuleEvaluation
from services.alerter.notify import Notifier
from services.alerter.offline import OfflineWatch
from services.alerter.rules import Evaluator
from services.alerter.settings import Settings
from services.alerter.store import AlertStore
from shared.db import DB_UNAVAILABLE
from shared.machines import MachineCache, MachineRepository
from shared.service import postgres_ready, resources, service_app

log = logging.getLogger(__name__)


async def refresh_rules(
    settings: Settings, store: AlertStore, evaluator: Evaluator, offline: OfflineWatch
) -> None:
    """Rules and the max_temperature_threshold setting, re-read every ALERTER_RULES_REFRESH_S;
    the open alerts too (acknowledged or cleared by hand, or by another replica)."""
    version: tuple[Any, ...] = ()
    while True:
        try:
            await store.sync_default_rule(
                settings.alerter.default_hysteresis, settings.alerter.default_severity
            )
            current = await store.rules_version()
            if current != version:
                rules = await store.rules()
                evaluator.set_rules(rules)
                offline.rules = rules
                version = current
                log.info("alert rules loaded: %d enabled", len(rules))
            # Decisions not yet recorded, or taken while the snapshot is read, stay.
            as_of = evaluator.settled
            evaluator.sync_open(
                {
                    (str(a["rule_id"]), str(a["machine_id"]))
                    for a in await store.open_alerts(kind="threshold")
                },
                as_of,
            )
        except DB_UNAVAILABLE as e:
            log.warning(
                "rules refresh failed, retrying in %s s: %s", settings.alerter.rules_refresh_s, e
            )
        await asyncio.sleep(settings.alerter.rules_refresh_s)


class State(TypedDict):
    pool: AsyncConnectionPool
    evaluation: RuleEvaluation
    notifier: Notifier


async def open_state(stack: AsyncExitStack, settings: Settings) -> State:
    pool = await resources.postgres(stack, settings.postgres, "alerter")
    redis = resources.redis(stack, settings.redis)
    connection = await resources.rabbitmq(stack, settings.amqp, "alerter")
    store = AlertStore(pool)
    evaluator = Evaluator()
    offline = OfflineWatch(settings.postgres, store, redis, settings.alerter.offline_sweep_s)
    stack.push_async_callback(offline.close)
    # Rules first: no reading is judged against an empty rule book.
    await store.sync_default_rule(
        settings.alerter.default_hysteresis, settings.alerter.default_severity
    )
    rules = await store.rules()
    evaluator.set_rules(rules)
    offline.rules = rules
    machines = MachineCache(MachineRepository(pool), redis)
    evaluation = RuleEvaluation(settings, connection, store, evaluator, machines)
    stack.push_async_callback(evaluation.stop)
    await evaluation.start()
    notifier = Notifier(settings, connection, store)
    stack.push_async_callback(notifier.stop)
    await notifier.start()
    for job in (
        refresh_rules(settings, store, evaluator, offline),
        offline.run(evaluation.exchange),
    ):
        stack.callback(asyncio.create_task(job).cancel)
    return {"pool": pool, "evaluation": evaluation, "notifier": notifier}


async def ready(state: State) -> dict[str, bool]:
    return {
        "rabbitmq": state["evaluation"].consuming and state["notifier"].consuming,
        "postgres": await postgres_ready(state["pool"]),
        "mqtt": state["notifier"].mqtt.connected,
    }


def create_app(settings: Settings) -> Starlette:
    return service_app("alerter", settings, open_state, ready)
