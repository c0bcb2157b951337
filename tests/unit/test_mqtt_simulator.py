"""The gateway simulator's pure parts: drifting values, timestamps, payloads, pacing."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Hashable

import orjson
import pytest

from shared.mqtt_payload import parse_payload
from shared.mqtt_topics import BadTopic, TopicTemplate, routing_key_of
from shared.readings import ValidationContext
from tools.simulator import Config, SimMachine, Simulator
from tools.simulator.cli import mqtt_sign_in, parse_args
from tools.simulator.payloads import TOPIC, fault, iso, mqtt_payload, reading
from tools.simulator.values import MachineModel


class RecordingMqtt:
    """Stands in for MqttPublisher."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, Hashable]] = []
        self.acked = 0
        self.outstanding = 0

    def publish(self, topic: str, payload: bytes, key: Hashable = None) -> None:
        self.sent.append((topic, payload, key))
        self.acked += 1

    def flush(self, timeout_s: float = 60) -> bool:
        return True


def test_values_drift_but_stay_plausible() -> None:
    rng = random.Random(1)
    model = MachineModel.pick(rng)
    samples = [model.sample(rng) for _ in range(5000)]
    temps = [s["temperature"] for s in samples]
    assert all(10 <= t <= 140 for t in temps)
    assert len(set(temps)) > 100  # not constant
    steps = [abs(a - b) for a, b in itertools.pairwise(temps)]
    assert max(steps) < 10  # a walk, not white noise


def test_payloads_pass_the_bridge_validation() -> None:
    ctx = ValidationContext().with_now()
    one = reading(1765620000_123456, {"temperature": 60.5}, "Temperature")
    assert one["timestamp"] == "2025-12-13T10:00:00.123456Z"
    assert parse_payload(mqtt_payload([one]), ctx).readings[0].sensor_type == "Temperature"
    assert len(parse_payload(mqtt_payload([one, one]), ctx).readings) == 2


def test_simulated_machines_send_distinct_increasing_timestamps() -> None:
    mqtt = RecordingMqtt()
    machines = [SimMachine(str(uuid.uuid4()), "f1") for _ in range(3)]
    config = Config(machines, rate=0, ticks=200, seed=3)
    stats = Simulator(config, mqtt=mqtt).run()  # type: ignore[arg-type]
    assert stats.readings == stats.messages == 600
    per_machine: dict[str, list[str]] = {}
    for topic, payload, _ in mqtt.sent:
        per_machine.setdefault(topic, []).append(orjson.loads(payload)["timestamp"])
    assert len(per_machine) == 3
    for stamps in per_machine.values():
        assert stamps == sorted(stamps) and len(set(stamps)) == 200


def test_fixed_start_gives_reproducible_timestamps_and_batches() -> None:
    mqtt = RecordingMqtt()
    m = SimMachine(str(uuid.uuid4()), "f1")
    config = Config([m], rate=10, ticks=7, readings_per_message=3, start_us=1765620000_000000)
    config.rate = 0  # unthrottled, but timestamps still 1 ms apart from start_us
    stats = Simulator(config, mqtt=mqtt).run()  # type: ignore[arg-type]
    assert stats.readings == 7 and stats.messages == 3
    docs = [orjson.loads(p) for _, p, _ in mqtt.sent]
    assert [len(d["readings"]) for d in docs[:2]] == [3, 3] and "readings" not in docs[2]
    assert docs[0]["readings"][1]["timestamp"] == iso(1765620000_001000)


def test_faults_replace_messages_at_the_requested_share() -> None:
    mqtt = RecordingMqtt()
    m = SimMachine(str(uuid.uuid4()), "f1")
    config = Config([m], rate=0, ticks=2000, bad_rate=0.1, unknown_rate=0.05, seed=7)
    stats = Simulator(config, mqtt=mqtt).run()  # type: ignore[arg-type]
    faults = sum(stats.faults.values())
    assert 200 < faults < 400
    assert stats.readings + faults == 2000
    assert set(stats.faults) == {
        "invalid_utf8",
        "invalid_json",
        "schema",
        "bad_topic",
        "unknown_machine",
    }


def test_config_needs_a_transport_and_an_end() -> None:
    m = [SimMachine(str(uuid.uuid4()))]
    with pytest.raises(ValueError):
        Simulator(Config(m, ticks=1))
    with pytest.raises(ValueError):
        Simulator(Config(m), mqtt=RecordingMqtt())  # type: ignore[arg-type]


def test_a_bad_topic_still_reaches_the_edge_queue_and_fails_the_template() -> None:
    """A "." in a level would make the edge's routing key a word longer: routed nowhere, never
    dead-lettered. The simulated bad topic keeps the template's shape and breaks the factory id."""
    topic, _ = fault("bad_topic", "f1", str(uuid.uuid4()), 1765620000_000000, random.Random(1))
    assert "." not in topic
    assert len(routing_key_of(topic).split(".")) == len(TOPIC.split("/"))
    with pytest.raises(BadTopic):
        TopicTemplate(TOPIC).parse(topic)


def test_mqtt_signs_in_as_the_gateway_given_or_as_a_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MQTT_USERNAME", raising=False)
    monkeypatch.setenv("AMQP_URL", "amqp://svc:pw@127.0.0.1:5672/")
    user, password, client_id = mqtt_sign_in(parse_args(["--ticks", "1"]))
    assert (user, password) == ("svc", "pw") and client_id.startswith("sim-")
    args = parse_args(["--ticks", "1", "--username", "GW-7", "--password", "s"])
    user, password, client_id = mqtt_sign_in(args)
    # The edge accepts a gateway's connection only under its own client id or <id>-suffix.
    assert (user, password) == ("GW-7", "s") and client_id.startswith("GW-7-")
    monkeypatch.setenv("MILLRACE_MQTT_PASSWORD", "from-env")
    assert parse_args(["--ticks", "1", "--username", "GW-7"]).password == "from-env"


@pytest.mark.parametrize(
    "argv",
    [["--ticks", "1", "--password", "s"], ["--ticks", "1", "--username", "GW-7"]],
)
def test_mqtt_credentials_come_in_pairs(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MILLRACE_MQTT_PASSWORD", raising=False)
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert "--password" in capsys.readouterr().err
