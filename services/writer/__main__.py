from services.writer.app import create_app
from services.writer.settings import Settings
from shared.service import run

run("writer", Settings, create_app)
