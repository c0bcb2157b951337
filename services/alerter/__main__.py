from services.alerter.app import create_app
from services.alerter.settings import Settings
from shared.service import run

run("alerter", Settings, create_app)
