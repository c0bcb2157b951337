"""Gateway simulator: N machines at R readings/s each, over MQTT and/or HTTP.

Command line: ``python -m tools.simulator --help``. From code (tests, benchmarks)::

    from tools.simulator import Config, MqttPublisher, SimMachine, Simulator

    # a gateway's client id and secret (a Millrace service: shared.edge.service_credentials)
    with MqttPublisher(
        "127.0.0.1", 1883, client_id=f"{gw}-sim", username=gw, password=secret
    ) as mqtt:
        stats = Simulator(Config([SimMachine(machine_id)], rate=0, ticks=1000), mqtt=mqtt).run()
"""

from tools.simulator.http import AuthRequired, ClientCredentials, HttpPublisher
from tools.simulator.mqtt import MqttPublisher
from tools.simulator.payloads import FAULT_KINDS, fault, mqtt_payload, reading, telemetry_topic
from tools.simulator.run import Config, SimMachine, Simulator, Stats

__all__ = [
    "FAULT_KINDS",
    "AuthRequired",
    "ClientCredentials",
    "Config",
    "HttpPublisher",
    "MqttPublisher",
    "SimMachine",
    "Simulator",
    "Stats",
    "fault",
    "mqtt_payload",
    "reading",
    "telemetry_topic",
]
