from services.mqtt_bridge.app import create_app
from services.mqtt_bridge.settings import Settings
from shared.service import run

run("mqtt_bridge", Settings, create_app)
