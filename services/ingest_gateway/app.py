"""The ingest gateway: gateways POST batches of readings; they are published to RabbitMQ."""

from __future__ import annotations

from starlette.applications import Starlette

from services.ingest_gateway.ingest_api import ROUTES
from services.ingest_gateway.settings import Settings
from services.ingest_gateway.state import open_state, ready
from shared.service import service_app


def create_app(settings: Settings) -> Starlette:
    return service_app(
        "ingest_gateway",
        settings,
        open_state,
        ready,
        routes=ROUTES,
        openapi_title="Millrace ingest gateway",
        security=settings.security,
    )
