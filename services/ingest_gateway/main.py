from __future__ import annotations

from typing import Any

import uvicorn
from starlette.applications import Starlette

from services.ingest_gateway.app import create_app
from services.ingest_gateway.settings import Settings
from shared import workers
from shared.log import configure_logging


def main() -> None:
    settings = Settings()
    configure_logging("ingest_gateway", settings.log_level)
    options: dict[str, Any] = {
        "host": settings.bind_host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.shutdown_timeout_s),
    }
    if settings.workers > 1:
        workers.run(
            "ingest_gateway",
            "services.ingest_gateway.main:worker_app",
            settings.workers,
            **options,
        )
    else:
        uvicorn.run(create_app(settings), **options)


def worker_app() -> Starlette:
    """The app of one worker process (settings and logging from the environment, as above)."""
    workers.follow_parent()
    settings = Settings()
    configure_logging("ingest_gateway", settings.log_level)
    return create_app(settings)
