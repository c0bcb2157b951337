"""MQTT: single-reading QoS 1 messages stored end to end, beside Mosquitto alone.

The same simulated gateways (``tools.simulator``, several processes) publish in both runs:

* ceiling — to ``bench/ceiling/...``, a topic the bridge does not subscribe to, received by
  ``mosquitto_sub`` at QoS 1 (publish → deliver, nothing else);
* end to end — to the telemetry topic; the run ends when InfluxDB holds every reading.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from shared.settings import MqttSettings
from tools.simulator import Config, MqttPublisher, SimMachine, Simulator, Stats

CEILING_TOPIC = "bench/ceiling/{factory_id}/{machine_id}"


@dataclass(slots=True)
class PublishJob:
    machines: list[str]
    factory_id: str
    ticks: int
    start_at: float
    start_us: int
    topic_template: str
    max_inflight: int = 1000


def publish(job: PublishJob) -> tuple[float, Stats]:
    """Entry point of a publisher process: (wall clock start, stats) once all are PUBACKed."""
    s = MqttSettings()
    with MqttPublisher(
        s.host,
        s.port,
        username=s.username,
        password=s.password.get_secret_value() if s.password else None,
        max_outstanding=job.max_inflight,
    ) as pub:
        config = Config(
            machines=[SimMachine(m, job.factory_id) for m in job.machines],
            rate=0,
            ticks=job.ticks,
            transport="mqtt",
            start_us=job.start_us,
            topic_template=job.topic_template,
        )
        sim = Simulator(config, mqtt=pub)
        delay = job.start_at - time.time()
        if delay > 0:
            time.sleep(delay)  # every publisher process starts at the same moment
        started = time.time()
        stats = sim.run()
    return started, stats


class CeilingSubscriber:
    """``mosquitto_sub`` at QoS 1 on the ceiling topics, counting deliveries as they come."""

    def __init__(self, factory_id: str) -> None:
        s = MqttSettings()
        self.topic = CEILING_TOPIC.format(factory_id=factory_id, machine_id="#")
        cmd = ["mosquitto_sub", "-h", s.host, "-p", str(s.port), "-q", "1", "-t", self.topic]
        cmd += ["-F", "x"]
        if s.username:
            cmd += ["-u", s.username]
            if s.password:
                cmd += ["-P", s.password.get_secret_value()]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, bufsize=0)
        self.received = 0
        self.last_at = 0.0
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._warm_up(factory_id)

    def _read(self) -> None:
        assert self._proc.stdout is not None
        while True:
            chunk = self._proc.stdout.read(65536)
            if not chunk:
                return
            with self._changed:
                self.received += chunk.count(b"\n")
                self.last_at = time.time()
                self._changed.notify_all()

    def _warm_up(self, factory_id: str) -> None:
        """Publish until the subscriber receives: then it is surely subscribed."""
        s = MqttSettings()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if s.username:
            client.username_pw_set(
                s.username, s.password.get_secret_value() if s.password else None
            )
        client.connect(s.host, s.port)
        client.loop_start()
        try:
            topic = CEILING_TOPIC.format(factory_id=factory_id, machine_id="warm-up")
            deadline = time.monotonic() + 10
            while not self.wait_for(1, 0.2):
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto_sub receives nothing")
                client.publish(topic, b"{}", qos=1).wait_for_publish(2)
        finally:
            client.disconnect()
            client.loop_stop()
        time.sleep(0.3)  # let stray warm-up copies arrive before counting starts
        with self._changed:
            self.received = 0

    def wait_for(self, count: int, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.received >= count, timeout_s)

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(5)
