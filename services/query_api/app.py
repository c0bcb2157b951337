"""Query API: history and summaries (``read:sensor_data``), the machine registry and status
(``*:machines``), configuration and its audit log, dead letters, the live stream."""

from __future__ import annotations

from starlette.applications import Starlette

from services.query_api.alerts.routes import alert_routes
from services.query_api.config.routes import config_routes
from services.query_api.console.routes import console_routes
from services.query_api.data.routes import data_routes
from services.query_api.deadletters.routes import deadletter_routes
from services.query_api.live.routes import live_routes
from services.query_api.machines.routes import machine_routes
from services.query_api.settings import Settings
from services.query_api.state import open_state, ready
from shared.service import service_app


def create_app(settings: Settings) -> Starlette:
    return service_app(
        "query_api",
        settings,
        open_state,
        ready,
        routes=[
            *data_routes(),
            *machine_routes(),
            *config_routes(),
            *deadletter_routes(),
            *live_routes(),
            *alert_routes(),
            *console_routes(),
        ],
        openapi_title="Millrace query API",
        security=settings.security,
    )
