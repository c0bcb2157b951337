"""The MQTT edge asks here who may connect, publish and subscribe (RabbitMQ's HTTP auth backend).

RabbitMQ's MQTT plugin is the broker gateways connect to. Its own users (Millrace's services)
sign in against RabbitMQ's internal database; everyone else is checked here, on every CONNECT and
on the first PUBLISH/SUBSCRIBE of each topic of a connection (the plugin caches the answer per
connection). The broker POSTs a form and reads ``allow`` or ``deny``:

- ``user``: username = the gateway's client id, password = its secret (the same credential as the
  HTTP client-credentials grant). The MQTT client id must be the client id, or start with it and
  a ``-`` (so one gateway cannot take over another's session). Only MQTT connections: an AMQP
  sign-in (no client id) is refused. Failures count towards the same throttle as the grant.
- ``vhost``: the edge's virtual host only.
- ``resource``: publish to the MQTT exchange; its own subscription queues only.
- ``topic``: write only to the telemetry topic of a machine in its scope (its factory, and its
  machine list when it has one); read only the alert topics of such machines.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from services.auth import gateways
from services.auth.api.bodies import read_fields, string_field
from services.auth.gateways import Gateway
from services.auth.state import state
from shared.db import fetch_one
from shared.edge import MQTT_EXCHANGE, EdgeSettings
from shared.http import resource_routes
from shared.machines import valid_uuid
from shared.metrics import AUTH_SIGN_INS
from shared.mqtt_topics import BadTopic, TopicTemplate, topic_of
from shared.openapi import doc

log = logging.getLogger(__name__)

ALLOW = PlainTextResponse("allow")
DENY = PlainTextResponse("deny")
GRANT = "mqtt"


def _answer(ok: bool) -> Response:
    return ALLOW if ok else DENY


def client_id_fits(client_id: str | None, username: str) -> bool:
    return client_id is not None and (client_id == username or client_id.startswith(username + "-"))


async def _gateway(request: Request, username: str | None) -> Gateway | None:
    if not username:
        return None
    gateway = await gateways.by_client_id(state(request)["pool"], username[:64])
    return gateway if gateway is not None and gateway.active else None


async def _machine_factory(request: Request, machine_id: str) -> str | None:
    if not valid_uuid(machine_id):
        return None
    async with state(request)["pool"].connection() as conn:
        row = await fetch_one(
            conn, "SELECT factory_id FROM machine_metadata WHERE id = %s", (machine_id,)
        )
    return str(row["factory_id"]) if row else None


async def in_scope(request: Request, gateway: Gateway, factory_id: str, machine_id: str) -> bool:
    """The gateway may speak for this machine: its factory, its list, the registry agrees."""
    if factory_id != gateway.factory_id:
        return False
    if gateway.machine_ids is not None and machine_id not in gateway.machine_ids:
        return False
    return await _machine_factory(request, machine_id) == gateway.factory_id


@dataclass(frozen=True, slots=True)
class EdgeRules:
    """What the edge's topics look like: read once from the environment at start-up."""

    template: TopicTemplate
    alerts: str  # the alerter's retained topic per machine: <ALERTER_MQTT_TOPIC>/<machine id>
    vhost: str

    @classmethod
    def from_env(cls) -> EdgeRules:
        return cls(
            EdgeSettings().template,
            os.environ.get("ALERTER_MQTT_TOPIC", "millrace/alerts").rstrip("/") + "/",
            os.environ.get("MQTT_EDGE_VHOST", "/"),
        )

    async def may_write(self, request: Request, gateway: Gateway, topic: str) -> bool:
        try:
            ids = self.template.parse(topic)
        except BadTopic:
            return False
        return await in_scope(request, gateway, ids.factory_id, ids.machine_id)

    async def may_read(self, request: Request, gateway: Gateway, topic: str) -> bool:
        if not topic.startswith(self.alerts):
            return False
        # Alert topics carry no factory level: the machine's registered factory decides.
        machine = topic[len(self.alerts) :]
        factory = await _machine_factory(request, machine)
        return factory is not None and await in_scope(request, gateway, factory, machine)


@doc("MQTT edge: may this client connect? (RabbitMQ HTTP auth backend)", tags=["mqtt edge"])
async def user(request: Request) -> Response:
    fields = await read_fields(request, optional=True)
    username = string_field(fields, "username")
    password = string_field(fields, "password")
    client_id = string_field(fields, "client_id")
    if not username or not password or not client_id_fits(client_id, username):
        AUTH_SIGN_INS.labels(GRANT, "failure").inc()
        log.info("MQTT connect refused for %r (client id %r)", username, client_id)
        return DENY
    throttle = state(request)["client_throttle"]
    subject = ("client", username[:64])
    if await throttle.retry_after(subject) is not None:
        AUTH_SIGN_INS.labels(GRANT, "throttled").inc()
        log.info("MQTT connect throttled for %s", username)
        return DENY
    gateway = await _gateway(request, username)
    hasher = state(request)["hasher"]
    ok = await hasher.verify(gateway.secret_hash if gateway else None, password)
    if gateway is None or not ok:
        await throttle.failure(subject)
        AUTH_SIGN_INS.labels(GRANT, "failure").inc()
        log.info("MQTT connect refused for %s: invalid client credentials", username)
        return DENY
    await throttle.reset(subject)
    AUTH_SIGN_INS.labels(GRANT, "success").inc()
    return ALLOW


def mqtt_routes() -> list[Route]:
    rules = EdgeRules.from_env()

    @doc("MQTT edge: may this client use the virtual host?", tags=["mqtt edge"])
    async def vhost_check(request: Request) -> Response:
        fields = await read_fields(request, optional=True)
        gateway = await _gateway(request, string_field(fields, "username"))
        return _answer(gateway is not None and string_field(fields, "vhost") == rules.vhost)

    @doc("MQTT edge: may this client use this exchange or queue?", tags=["mqtt edge"])
    async def resource(request: Request) -> Response:
        fields = await read_fields(request, optional=True)
        gateway = await _gateway(request, string_field(fields, "username"))
        if gateway is None or string_field(fields, "vhost") != rules.vhost:
            return DENY
        kind = string_field(fields, "resource")
        name = string_field(fields, "name") or ""
        permission = string_field(fields, "permission")
        if kind == "exchange":
            return _answer(name == MQTT_EXCHANGE and permission in ("write", "read"))
        if kind == "queue":  # the plugin's subscription queues: mqtt-subscription-<client id>qos<n>
            own = re.fullmatch(r"mqtt-subscription-(.+)qos[01]", name)
            return _answer(own is not None and client_id_fits(own.group(1), gateway.client_id))
        return DENY

    @doc("MQTT edge: may this client publish to / subscribe to this topic?", tags=["mqtt edge"])
    async def topic(request: Request) -> Response:
        fields = await read_fields(request, optional=True)
        gateway = await _gateway(request, string_field(fields, "username"))
        key = string_field(fields, "routing_key")
        if gateway is None or key is None or string_field(fields, "name") != MQTT_EXCHANGE:
            return DENY
        permission = string_field(fields, "permission")
        name = topic_of(key)
        if permission == "write":
            ok = await rules.may_write(request, gateway, name)
        else:
            ok = permission == "read" and await rules.may_read(request, gateway, name)
        if not ok:
            log.info("MQTT %s on %r refused for gateway %s", permission, name, gateway.gateway_id)
        return _answer(ok)

    return resource_routes(
        "/api/v1/mqtt/auth",
        {
            "/user": {"POST": user},
            "/vhost": {"POST": vhost_check},
            "/resource": {"POST": resource},
            "/topic": {"POST": topic},
        },
    )
