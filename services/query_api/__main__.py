from services.query_api.app import create_app
from services.query_api.settings import Settings
from shared.service import run

run("query_api", Settings, create_app)
