from services.ingest_gateway.app import create_app
from services.ingest_gateway.settings import Settings
from shared.service import run

run("ingest_gateway", Settings, create_app, workers=lambda settings: settings.gateway.workers)
