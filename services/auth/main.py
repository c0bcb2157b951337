from __future__ import annotations

import uvicorn

from services.auth.app import create_app
from services.auth.settings import Settings


def serve(settings: Settings) -> None:
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
    )
