"""The bridge's process: /health, /ready and /metrics over HTTP; the lifespan owns every
connection and runs the bridge.

SIGTERM → uvicorn runs the lifespan shutdown → the bridge stops consuming the edge queue,
finishes the groups in flight, acknowledges them, publishes ``offline``; then RabbitMQ and the
databases close. What it had prefetched and not finished goes back to the edge queue.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TypedDict

from starlette.applications import Starlette

from services.mqtt_bridge.bridge import Bridge
from services.mqtt_bridge.settings import Settings
from shared import broker
from shared.machines import MachineCache, MachineRepository
from shared.service import resources, service_app


class State(TypedDict):
    bridge: Bridge
    publisher: broker.Publisher


async def open_state(stack: AsyncExitStack, settings: Settings) -> State:
    redis = resources.redis(stack, settings.redis)
    pool = await resources.postgres(stack, settings.postgres, "mqtt_bridge")
    name = f"mqtt_bridge {settings.mqtt.client_id}"
    connection = await resources.rabbitmq(stack, settings.amqp, name)
    publisher = await resources.publisher(stack, settings.amqp, connection)
    bridge = Bridge(settings, publisher, MachineCache(MachineRepository(pool), redis), connection)
    # Leave a little of the shutdown budget for closing the connections after it.
    stack.push_async_callback(bridge.stop, max(1.0, settings.shutdown_timeout_s - 2.0))
    await bridge.start()
    return {"bridge": bridge, "publisher": publisher}


async def ready(state: State) -> dict[str, bool]:
    return {"edge": state["bridge"].edge_ready, "rabbitmq": state["publisher"].ready}


def create_app(settings: Settings) -> Starlette:
    return service_app("mqtt_bridge", settings, open_state, ready)
