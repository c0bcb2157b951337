from __future__ import annotations

import uvicorn

from services.mqtt_bridge.app import create_app
from services.mqtt_bridge.settings import Settings
from shared.log import configure_logging


def main() -> None:
    settings = Settings()
    configure_logging("mqtt_bridge", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
    )
