"""Prometheus, its alert rules, the Grafana dashboards, the reverse proxy and the TLS material of
docker compose, checked offline: every metric a query names is one the services register (read
from the code: every module of shared/ and services/ imported, the registry listed) or one
RabbitMQ or Prometheus itself provides (infra/prometheus/external-metrics.txt). Where the real
tool is installed (promtool, nginx, rabbitmq-server, mosquitto, openssl) it checks the files too:
a scratch RabbitMQ node serves the MQTT edge on compose's configuration, and Mosquitto runs the
example bridge of a plant's own broker into it."""

from __future__ import annotations

import asyncio
import getpass
import importlib
import json
import os
import pkgutil
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aio_pika
import paho.mqtt.client as mqtt
import pytest
import yaml
from prometheus_client import REGISTRY

import services
import shared
from shared import edge as edge_queue
from shared.edge import DEFAULT_TEMPLATE, EdgeSettings
from shared.lineprotocol import MEASUREMENT
from shared.mqtt_topics import TopicTemplate
from shared.readings import BUILTIN_FIELDS
from shared.settings import AmqpSettings, InfluxSettings
from tests.paths import ROOT
from tests.unit.test_compose import (
    CONTRACT_PORTS,
    EDGE_CONF,
    RABBITMQ_DIR,
    rabbitmq_conf,
    raw_compose,
)

PROMETHEUS = ROOT / "infra" / "prometheus"
GRAFANA = ROOT / "infra" / "grafana"
PROXY = ROOT / "infra" / "proxy" / "nginx.conf"
TLS = ROOT / "infra" / "tls"
BRIDGE_EXAMPLE = ROOT / "infra" / "mosquitto" / "bridge-example.conf"
K8S_CONFIG = ROOT / "infra" / "k8s" / "base" / "config.yaml"

# Modules whose import runs something (entry points): never imported here.
ENTRY_MODULES = ("__main__", "main", "cli")
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


# ------------------------------------------------------------------ what is exported


@cache
def exported() -> frozenset[str]:
    """Every series name the services can expose on /metrics, plus the external ones."""
    for package in (shared, services):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module.name.rsplit(".", 1)[-1] not in ENTRY_MODULES:
                importlib.import_module(module.name)
    names: set[str] = set()
    for family in REGISTRY.collect():
        names |= {s.name for s in family.samples}
        if family.type == "counter":
            names |= {family.name + "_total", family.name + "_created"}
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_count", "_sum", "_created")}
        else:
            names.add(family.name)
    for line in (PROMETHEUS / "external-metrics.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            names.add(line.strip())
    return frozenset(names)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels, strings, durations
    and numbers removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = set()
    for m in re.finditer(r"(?<![\w.$])[a-zA-Z_:][\w:]*", text):
        word = m.group(0)
        after = text[m.end() :].lstrip()
        if after.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        found.add(word)
    return found


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (service, le) (rate(millrace_http_request_seconds_bucket{status=~"5.."}[5m]))'
        " / ignoring(x) up > 300e6 and on(job) millrace_build_info"
    )
    assert metric_names(expr) == {
        "millrace_http_request_seconds_bucket",
        "up",
        "millrace_build_info",
    }


def test_the_code_registers_the_operability_metrics() -> None:
    names = exported()
    for name in (
        "millrace_build_info",
        "millrace_auth_logins_total",
        "millrace_auth_tokens_issued_total",
        "millrace_writer_influx_retries_total",
        "millrace_http_requests_total",
        "process_resident_memory_bytes",
    ):
        assert name in names, name
    assert "millrace_no_such_metric_total" not in names


# ------------------------------------------------------------------ alert rules


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    assert set(doc) == {"groups"}
    rules = []
    for group in doc["groups"]:
        assert set(group) <= {"name", "rules", "interval"} and group["rules"], group.get("name")
        rules += group["rules"]
    return rules


def test_alert_rules_are_well_formed() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "alert names are unique"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert re.fullmatch(r"Millrace[A-Z]\w+", rule["alert"])
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["for"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_alert_rules_name_only_exported_metrics() -> None:
    for rule in alert_rules():
        unknown = metric_names(rule["expr"]) - exported()
        assert not unknown, f"{rule['alert']} names metrics nobody exports: {sorted(unknown)}"


def test_what_on_call_must_know_at_3am_has_an_alert() -> None:
    """Queue growing, writer retrying, dead letters arriving, a service down, disk/memory alarm."""
    by_metric: dict[str, set[str]] = {}
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            by_metric.setdefault(name, set()).add(rule["alert"])
    for needed in (
        "rabbitmq_detailed_queue_messages",
        "millrace_writer_influx_retries_total",
        "millrace_mqtt_dead_letters_total",
        "millrace_writer_dead_lettered_total",
        "up",
        "rabbitmq_alarms_memory_used_watermark",
        "rabbitmq_alarms_free_disk_space_watermark",
    ):
        assert needed in by_metric, f"no alert on {needed}"
    down = next(r for r in alert_rules() if r["alert"] == "MillraceServiceDown")
    jobs = re.search(r'job=~"([^"]+)"', down["expr"])
    assert jobs and set(jobs.group(1).split("|")) == set(CONTRACT_PORTS)


def test_every_alert_has_its_line_in_the_runbook() -> None:
    """docs/production.md's alert table (what to do when it fires) names every rule, no more."""
    doc = (ROOT / "docs" / "production.md").read_text()
    section = doc.split("\n## Monitoring and alerts\n", 1)[1].split("\n## ", 1)[0]
    listed: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| Millrace"):
            first = line.split("|")[1].strip()
            # "MillraceRabbitMQMemoryAlarm / DiskAlarm": the second shares the first's prefix.
            names = [n.strip() for n in first.split("/")]
            prefix = re.match(r"Millrace[A-Z][a-z]+(?:MQ)?", names[0])
            assert prefix, first
            listed |= {n if n.startswith("Millrace") else prefix.group(0) + n for n in names}
    assert listed == {r["alert"] for r in alert_rules()}


def test_the_mqtt_edge_has_its_alerts() -> None:
    """No bridge on the edge queue, the queue nearly at its bound, the queue growing, gateways
    gone: each has a rule on the queue the settings name, and the bound is the deployed one."""
    edge = EdgeSettings()
    on_queue: dict[str, str] = {}
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            if f'queue="{edge.queue}"' in rule["expr"]:
                on_queue[name] = rule["alert"]
    for needed in (
        "rabbitmq_detailed_queue_consumers",
        "rabbitmq_detailed_queue_messages",
        "rabbitmq_detailed_queue_messages_bytes",
    ):
        assert needed in on_queue, f"no alert on {needed} of {edge.queue}"
    full = next(r for r in alert_rules() if r["alert"] == on_queue[needed])
    threshold = re.search(r"> 0\.8 \* (\d+)", full["expr"])
    assert threshold, full["expr"]
    deployed = {
        "default": edge.max_bytes,
        "compose": int(
            raw_compose()["services"]["mqtt_bridge"]["environment"]["MQTT_EDGE_MAX_BYTES"]
        ),
        "kubernetes": int(yaml.safe_load(K8S_CONFIG.read_text())["data"]["MQTT_EDGE_MAX_BYTES"]),
    }
    assert set(deployed.values()) == {int(threshold.group(1))}, deployed
    assert any(
        "rabbitmq_global_publishers" in metric_names(r["expr"]) and 'protocol=~"mqtt' in r["expr"]
        for r in alert_rules()
    ), "no alert on MQTT connections"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def test_promtool_accepts_the_rules_and_their_unit_tests() -> None:
    tool = promtool()
    check = subprocess.run(
        [tool, "check", "rules", str(PROMETHEUS / "alerts.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run(
        [tool, "test", "rules", "alerts_test.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_promtool_accepts_the_prometheus_configuration(tmp_path: Path) -> None:
    tool = promtool()
    config = (PROMETHEUS / "prometheus.yml").read_text()
    # The rule file is mounted at /etc/prometheus in the container.
    config = config.replace("/etc/prometheus/", f"{PROMETHEUS}/")
    (tmp_path / "prometheus.yml").write_text(config)
    check = subprocess.run(
        [tool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


# ------------------------------------------------------------------ Prometheus scraping


def test_prometheus_scrapes_every_copy_of_every_service() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    compose = raw_compose()["services"]
    for service, port in CONTRACT_PORTS.items():
        [sd] = jobs[service]["dns_sd_configs"]
        assert sd == {"names": [service], "type": "A", "port": port}
        assert service in compose
    assert jobs["rabbitmq_queues"]["metrics_path"] == "/metrics/detailed"
    families = jobs["rabbitmq_queues"]["params"]["family"]
    # Depth (coarse) and bytes and consumers (queue_metrics, which already has the consumer
    # count: with queue_consumer_count too, RabbitMQ would emit that family twice).
    assert {"queue_coarse_metrics", "queue_metrics"} <= set(families)
    assert "queue_consumer_count" not in families
    mounts = compose["prometheus"]["volumes"]
    assert "./infra/prometheus:/etc/prometheus:ro" in mounts


# ------------------------------------------------------------------ Grafana


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.stem: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def datasources() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "millrace.yaml").read_text())
    return {d["uid"]: d for d in doc["datasources"]}


def test_grafana_provisioning_points_at_the_compose_services() -> None:
    sources = datasources()
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    assert sources["influxdb"]["url"] == "http://influxdb:8086"
    token = sources["influxdb"]["secureJsonData"]["httpHeaderValue1"]
    assert token == "Token ${INFLUX_TOKEN}", "the token comes from the environment"
    env = raw_compose()["services"]["grafana"]["environment"]
    assert "INFLUX_TOKEN" in env and "INFLUX_DATABASE" in env
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "millrace.yaml").read_text()
    )
    [entry] = provider["providers"]
    volumes = raw_compose()["services"]["grafana"]["volumes"]
    assert f"./infra/grafana/dashboards:{entry['options']['path']}:ro" in volumes
    assert dashboards(), "no dashboard"


def test_every_dashboard_query_names_exported_metrics() -> None:
    sources = datasources()
    checked = 0
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] in sources, f"{name}: {panel['title']}"
            for target in panel["targets"]:
                if target["datasource"]["type"] != "prometheus":
                    continue
                unknown = metric_names(target["expr"]) - exported()
                assert not unknown, f"{name} / {panel['title']}: {sorted(unknown)} not exported"
                checked += 1
    assert checked >= 20


def test_pipeline_dashboard_shows_what_the_operator_needs() -> None:
    dashboard = dashboards()["pipeline"]
    shown = {
        n
        for p in panels(dashboard)
        for t in p.get("targets", [])
        for n in metric_names(t.get("expr", ""))
    }
    for needed in (
        "millrace_ingest_readings_total",  # door rates
        "millrace_mqtt_readings_total",
        "millrace_http_requests_total",  # answers
        "rabbitmq_detailed_queue_messages",  # queue depths
        "millrace_writer_readings_written_total",  # writer lag
        "millrace_writer_pending_readings",
        "millrace_writer_influx_retries_total",  # retries
        "millrace_mqtt_dead_letters_total",  # dead letters by reason
        "millrace_writer_dead_lettered_total",
        "ALERTS",  # what fires
        "millrace_auth_logins_total",
        "millrace_build_info",
    ):
        assert needed in shown, needed
    dead = [p for p in panels(dashboard) if p["title"] == "Dead letters by reason"]
    assert dead and all("by (reason)" in t["expr"] for t in dead[0]["targets"])


def test_plant_dashboard_reads_the_stored_readings() -> None:
    settings = InfluxSettings()
    dashboard = dashboards()["plant"]
    queries = [t["query"] for p in panels(dashboard) for t in p.get("targets", [])]
    queries += [v["query"] for v in dashboard["templating"]["list"]]
    assert queries
    fields = set()
    for query in queries:
        sources = re.findall(r'FROM "(\w+)"\."(\w+)"', query)
        assert sources, query
        for rp, measurement in sources:
            assert measurement == MEASUREMENT
            assert rp in (settings.raw_rp, settings.hourly_rp, settings.daily_rp)
        for tag in re.findall(r'"(\w+_id)"', query):
            assert tag in ("machine_id", "factory_id"), tag
        for field in re.findall(r'(?:mean|count|max|min)\("(\w+)"\)|SELECT "(\w+)"', query):
            fields |= {f for f in field if f}
    tiers = {f"mean_{f}" for f in BUILTIN_FIELDS}
    assert fields and fields <= set(BUILTIN_FIELDS) | tiers, fields
    assert set(BUILTIN_FIELDS) <= fields, "a panel per built-in field"


# ------------------------------------------------------------------ reverse proxy


def nginx_locations() -> dict[str, str]:
    text = PROXY.read_text()
    upstreams = {m[0]: m[1] for m in re.findall(r"set \$(\w+) http://(\w+):(\d+);", text)}
    routes = {}
    for m in re.finditer(r"location (=\s*)?(\S+) \{\s*proxy_pass \$(\w+);", text):
        routes[("=" if m.group(1) else "") + m.group(2)] = upstreams[m.group(3)]
    return routes


def _route(routes: dict[str, str], path: str) -> str | None:
    if "=" + path in routes:
        return routes["=" + path]
    prefixes = [p for p in routes if not p.startswith("=") and path.startswith(p)]
    return routes[max(prefixes, key=len)] if prefixes else None


def test_proxy_routes_each_door_to_its_service_by_name() -> None:
    text = PROXY.read_text()
    ports = dict(re.findall(r"set \$\w+ http://(\w+):(\d+);", text))
    for service in ("ingest_gateway", "query_api", "auth"):
        assert ports[service] == str(CONTRACT_PORTS[service])
    routes = nginx_locations()
    expected = {
        "/api/v1/data/ingest": "ingest_gateway",
        "/api/v1/auth/login": "auth",
        "/api/v1/auth/gateways": "auth",
        "/.well-known/jwks.json": "auth",
        "/api/v1/machines": "query_api",
        "/api/v1/data/machine/m-1": "query_api",
        "/api/v1/deadletters": "query_api",
    }
    for path, service in expected.items():
        assert _route(routes, path) == service, path
    assert _route(routes, "/metrics") is None, "/metrics stays inside"
    # RabbitMQ asks auth about gateways on /api/v1/mqtt/auth/*: never routed from outside.
    assert _route(routes, "/api/v1/mqtt/auth/user") != "auth"
    # Resolved at request time through Docker's DNS (the copies of a scaled service change).
    assert re.search(r"resolver 127\.0\.0\.11 valid=\d+s", text)
    assert re.search(r"listen 443 ssl", text)
    assert "ssl_certificate /etc/nginx/tls/server.crt;" in text
    assert "ssl_certificate_key /etc/nginx/tls/server.key;" in text
    # The proxy overwrites X-Forwarded-For: a client cannot choose the address the services see.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text


@pytest.fixture(scope="module")
def dev_tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    out = tmp_path_factory.mktemp("tls")
    done = subprocess.run(
        ["bash", str(TLS / "dev-certs.sh"), str(out)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return out


def test_dev_certificates_are_signed_by_the_dev_ca_for_the_service_names(dev_tls: Path) -> None:
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(dev_tls / "ca.crt"), str(dev_tls / "server.crt")],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr
    context = ssl.create_default_context(cafile=str(dev_tls / "ca.crt"))
    context.load_cert_chain(str(dev_tls / "server.crt"), str(dev_tls / "server.key"))
    sans = subprocess.run(
        ["openssl", "x509", "-in", str(dev_tls / "server.crt"), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
    ).stdout
    # The compose names of the two TLS doors (nginx, RabbitMQ's MQTT edge) and loopback.
    for name in ("localhost", "millrace.localtest.me", "rabbitmq", "proxy"):
        assert f"DNS:{name}" in sans
    assert "IP Address:127.0.0.1" in sans
    # RabbitMQ (uid 999 in its image) must read the key it serves MQTT over TLS with.
    assert (dev_tls / "server.key").stat().st_mode & 0o004
    conf = rabbitmq_conf(EDGE_CONF.read_text())
    for key in ("ssl_options.certfile", "ssl_options.keyfile"):
        assert (dev_tls / Path(conf[key]).name).exists(), conf[key]


def test_nginx_accepts_the_proxy_configuration(dev_tls: Path, tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    conf = PROXY.read_text().replace("/etc/nginx/tls/", f"{dev_tls}/")
    conf = conf.replace("/var/run/nginx.pid", f"{tmp_path}/nginx.pid")
    (tmp_path / "nginx.conf").write_text(conf)
    check = subprocess.run(
        [nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path), "-e", "/dev/stderr"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


# ------------------------------------------------------------------ a plant's own Mosquitto


def conf_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.strip().partition(" ")
            settings.setdefault(key, []).append(value)
    return settings


def test_the_bridge_example_forwards_one_factorys_telemetry_as_one_gateway() -> None:
    conf = conf_settings(BRIDGE_EXAMPLE)
    assert conf["connection"] == ["millrace-edge"]
    # Compose publishes the edge's TLS port; the example connects to it.
    host, _, port = conf["address"][0].rpartition(":")
    published = [str(p).split(":")[-1] for p in raw_compose()["services"]["rabbitmq"]["ports"]]
    assert [port] == published and host
    # One topic, out, QoS 1 (a PUBACK from the edge's quorum queue): the telemetry template with
    # a fixed factory and any machine.
    [topic] = conf["topic"]
    pattern, direction, qos = topic.split()
    assert (direction, qos) == ("out", "1")
    template = TopicTemplate(DEFAULT_TEMPLATE)
    ids = template.parse(pattern.replace("+", "00000000-0000-4000-8000-000000000000"))
    assert ids.factory_id == "F-01" and pattern.count("+") == 1
    # Auth takes the gateway from the client id: username and client id are the same.
    assert conf["remote_clientid"] == conf["remote_username"]
    # What RabbitMQ's MQTT plugin accepts and does not refuse.
    assert conf["bridge_protocol_version"] == ["mqttv311"]
    assert conf["try_private"] == ["false"] and conf["notifications"] == ["false"]
    assert conf["bridge_insecure"] == ["false"] and conf["bridge_cafile"]
    # What the plant's broker keeps while Millrace is unreachable survives its restarts.
    assert conf["persistence"] == ["true"]
    assert conf["cleansession"] == conf["local_cleansession"] == ["false"]
    assert int(conf["max_queued_messages"][0]) >= 100_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _mqtt_string(data: bytes, at: int) -> tuple[str, int]:
    size = int.from_bytes(data[at : at + 2], "big")
    return data[at + 2 : at + 2 + size].decode(), at + 2 + size


def parse_connect(packet: bytes) -> dict[str, Any]:
    """An MQTT 3.1.1 CONNECT (fixed header included): what the edge would see."""
    assert packet[0] == 0x10, f"not a CONNECT: {packet[:1]!r}"
    length, shift, at = 0, 0, 1
    while True:
        byte = packet[at]
        length |= (byte & 0x7F) << shift
        at += 1
        shift += 7
        if not byte & 0x80:
            break
    assert len(packet) >= at + length, "CONNECT cut short"
    name, at = _mqtt_string(packet, at)
    level, flags = packet[at], packet[at + 1]
    at += 4  # level, flags, keep-alive
    client_id, at = _mqtt_string(packet, at)
    assert not flags & 0x04, "no will expected"
    username = password = None
    if flags & 0x80:
        username, at = _mqtt_string(packet, at)
    if flags & 0x40:
        password, at = _mqtt_string(packet, at)
    return {
        "protocol": name,
        "level": level,
        "clean_session": bool(flags & 0x02),
        "client_id": client_id,
        "username": username,
        "password": password,
    }


def _read_connect(conn: ssl.SSLSocket, deadline: float) -> bytes:
    data = b""
    while time.monotonic() < deadline:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        try:
            parse_connect(data)
            return data
        except (AssertionError, IndexError):
            continue
    raise AssertionError(f"no complete CONNECT before the deadline: {data!r}")


def test_mosquitto_bridges_into_the_edge_with_the_example(dev_tls: Path, tmp_path: Path) -> None:
    """Mosquitto started on infra/mosquitto/bridge-example.conf (listener, files and the edge's
    address moved to loopback): it accepts the file, checks the edge's certificate against the
    CA and signs in over TLS as the gateway, MQTT 3.1.1 without Mosquitto's private bridge flag
    (which RabbitMQ refuses), keeping its session."""
    broker = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if broker is None:
        pytest.skip("mosquitto is not installed")
    conf = conf_settings(BRIDGE_EXAMPLE)
    edge = socket.create_server(("127.0.0.1", 0))
    edge_port = edge.getsockname()[1]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(dev_tls / "server.crt"), str(dev_tls / "server.key"))
    plant = free_port()
    text = BRIDGE_EXAMPLE.read_text()
    for old, new in (
        ("listener 1883", f"listener {plant} 127.0.0.1"),
        ("password_file /etc/mosquitto/passwd", f"password_file {tmp_path}/passwd"),
        ("persistence_location /var/lib/mosquitto/", f"persistence_location {tmp_path}/"),
        (f"address {conf['address'][0]}", f"address 127.0.0.1:{edge_port}"),
        (f"bridge_cafile {conf['bridge_cafile'][0]}", f"bridge_cafile {dev_tls}/ca.crt"),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    # Started by root (CI), Mosquitto would switch to its own user, who cannot read tmp_path.
    text += f"\nuser {getpass.getuser()}\nlog_dest stderr\n"
    (tmp_path / "mosquitto.conf").write_text(text)
    (tmp_path / "passwd").write_text("")
    (tmp_path / "passwd").chmod(0o600)
    proc = subprocess.Popen(
        [broker, "-c", str(tmp_path / "mosquitto.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_listening(plant, proc)
        edge.settimeout(15)
        raw, _ = edge.accept()
        deadline = time.monotonic() + 15
        with context.wrap_socket(raw, server_side=True) as conn:
            conn.settimeout(5)
            connect = parse_connect(_read_connect(conn, deadline))
    finally:
        edge.close()
        proc.terminate()
        output = proc.communicate(timeout=10)[0]
    # A configuration error reads "Error: ..." (the fake edge's hang-up is an OpenSSL error).
    assert "Config loaded" in output and "Error: " not in output, output
    assert connect == {
        "protocol": "MQTT",
        "level": 4,  # 3.1.1; with try_private it would be 0x84
        "clean_session": False,
        "client_id": conf["remote_clientid"][0],
        "username": conf["remote_username"][0],
        "password": conf["remote_password"][0],
    }


def _wait_listening(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"mosquitto never listened on {port}")


# ------------------------------------------------------------------ the MQTT edge on RabbitMQ

GATEWAY = ("gw-01", "s3cret-gw")


class FakeAuth(BaseHTTPRequestHandler):
    """auth's MQTT endpoints as RabbitMQ's HTTP backend calls them: one gateway, GATEWAY."""

    calls: list[tuple[str, dict[str, str]]] = []

    def do_POST(self) -> None:
        size = int(self.headers.get("content-length") or 0)
        fields = dict(parse_qsl(self.rfile.read(size).decode()))
        self.calls.append((self.path, fields))
        ok = fields.get("username") == GATEWAY[0]
        if self.path.endswith("/user"):
            ok = ok and fields.get("password") == GATEWAY[1]
        body = b"allow" if ok else b"deny"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _wait_port(port: int, deadline: float, what: str) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"{what} never listened on {port}")


@pytest.fixture
def edge_node(dev_tls: Path) -> Iterator[dict[str, Any]]:
    """A scratch RabbitMQ node (not the pipeline's) on compose's enabled_plugins and edge
    configuration, with ports, certificate paths and auth's address moved to loopback."""
    server = shutil.which("rabbitmq-server") or shutil.which("rabbitmq-server", path="/usr/sbin")
    ctl = shutil.which("rabbitmqctl") or shutil.which("rabbitmqctl", path="/usr/sbin")
    if server is None or ctl is None:
        pytest.skip("RabbitMQ is not installed")
    if os.geteuid() != 0:
        pytest.skip("RabbitMQ's wrapper runs nodes as user rabbitmq: needs root")
    auth = ThreadingHTTPServer(("127.0.0.1", 0), FakeAuth)
    FakeAuth.calls = []
    threading.Thread(target=auth.serve_forever, daemon=True).start()
    ports = {k: free_port() for k in ("amqp", "mqtt", "mqtts", "mgmt", "prom", "dist")}
    # Readable by user rabbitmq (pytest's own tmp_path is root's alone).
    home = Path(tempfile.mkdtemp(prefix="millrace-edge-node-", dir="/tmp"))
    home.chmod(0o755)
    shutil.copytree(dev_tls, home / "tls")
    conf = EDGE_CONF.read_text()
    for old, new in (
        (
            "mqtt.listeners.tcp.default = 1883",
            f"mqtt.listeners.tcp.default = 127.0.0.1:{ports['mqtt']}",
        ),
        (
            "mqtt.listeners.ssl.default = 8883",
            f"mqtt.listeners.ssl.default = 127.0.0.1:{ports['mqtts']}",
        ),
    ):
        assert conf.count(old) == 1, old
        conf = conf.replace(old, new)
    conf = conf.replace("/etc/rabbitmq/tls/", f"{home}/tls/")
    conf = conf.replace("http://auth:8003/", f"http://127.0.0.1:{auth.server_address[1]}/")
    (home / "conf.d").mkdir()
    (home / "conf.d" / EDGE_CONF.name).write_text(conf)
    (home / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{ports['amqp']}\n"
        f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {ports['mgmt']}\n"
        f"prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = {ports['prom']}\n"
    )
    shutil.copy(RABBITMQ_DIR / "enabled_plugins", home / "enabled_plugins")
    subprocess.run(["chown", "-R", "rabbitmq:", str(home)], check=True)
    node = f"millrace-edge-test-{os.getpid()}@localhost"
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_PORT": str(ports["amqp"]),
        "RABBITMQ_DIST_PORT": str(ports["dist"]),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
        "RABBITMQ_CONFIG_FILES": str(home / "conf.d"),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(home / "rabbitmq.pid"),
    }
    subprocess.run([server, "-detached"], env=env, check=True, timeout=60)
    try:
        deadline = time.monotonic() + 90
        try:
            for name in ("amqp", "mqtt", "mqtts"):
                _wait_port(ports[name], deadline, f"the scratch node's {name} listener")
        except AssertionError:
            logs = "".join(p.read_text() for p in (home / "log").glob("*.log"))
            raise AssertionError(logs[-4000:]) from None
        yield {"ports": ports, "conf": rabbitmq_conf(conf), "home": home}
    finally:
        subprocess.run([ctl, "-n", node, "stop"], capture_output=True, timeout=120)
        pid_file = home / "rabbitmq.pid"
        if pid_file.exists():  # stop failed: end the node we started, by its pid
            subprocess.run(["kill", pid_file.read_text().strip()], capture_output=True)
        auth.shutdown()
        shutil.rmtree(home, ignore_errors=True)


async def _declare_edge(url: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await edge_queue.declare(channel, EdgeSettings(), AmqpSettings(url=url))


async def _take_from_edge(url: str, deadline: float) -> aio_pika.abc.AbstractIncomingMessage:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(EdgeSettings().queue)
        while time.monotonic() < deadline:
            message = await queue.get(no_ack=True, fail=False)
            if message is not None:
                return message
            await asyncio.sleep(0.1)
    raise AssertionError("nothing reached the edge queue")


def _mqtt_client(client_id: str, password: str, dev_tls: Path) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
    )
    client.username_pw_set(client_id, password)
    client.tls_set(ca_certs=str(dev_tls / "ca.crt"))
    return client


def _connect(client: mqtt.Client, port: int, deadline: float) -> Any:
    answers: list[Any] = []
    client.on_connect = lambda c, u, flags, rc, props: answers.append(rc)
    client.connect("localhost", port)
    client.loop_start()
    while not answers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answers, "no CONNACK"
    return answers[0]


def test_rabbitmq_serves_the_edge_over_tls_with_compose_configuration(
    edge_node: dict[str, Any], dev_tls: Path
) -> None:
    """On a real RabbitMQ node with compose's plugins and edge configuration: a gateway signs in
    over TLS with its client id and secret (RabbitMQ asks auth at the configured paths), its
    QoS 1 publish is acknowledged and lands in the edge queue; a wrong secret is refused; plain
    MQTT on the TLS port gets no CONNACK."""
    ports, conf = edge_node["ports"], edge_node["conf"]
    url = f"amqp://guest:guest@127.0.0.1:{ports['amqp']}/"
    asyncio.run(_declare_edge(url))
    deadline = time.monotonic() + 30
    machine = str(uuid.uuid4())
    topic = TopicTemplate(DEFAULT_TEMPLATE).levels
    topic_name = "/".join(topic).format(factory_id="F-01", machine_id=machine)
    client = _mqtt_client(GATEWAY[0], GATEWAY[1], dev_tls)
    try:
        assert not _connect(client, ports["mqtts"], deadline).is_failure
        info = client.publish(topic_name, b'{"readings": []}', qos=1)
        info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
        assert info.is_published(), "no PUBACK from the edge"
    finally:
        client.loop_stop()
        client.disconnect()
    message = asyncio.run(_take_from_edge(url, deadline))
    assert message.routing_key == topic_name.replace("/", ".")
    assert message.body == b'{"readings": []}'
    paths = {path for path, _ in FakeAuth.calls}
    configured = {
        urlsplit(conf[k]).path for k in conf if k.startswith("auth_http.") and k.endswith("_path")
    }
    assert {"/api/v1/mqtt/auth/user", "/api/v1/mqtt/auth/topic"} <= paths <= configured
    [user] = [f for path, f in FakeAuth.calls if path.endswith("/user")]
    assert user["username"] == GATEWAY[0] and user.get("client_id") == GATEWAY[0]
    # A wrong secret: refused at CONNECT.
    intruder = _mqtt_client(GATEWAY[0], "wrong", dev_tls)
    try:
        assert _connect(intruder, ports["mqtts"], deadline).is_failure
    finally:
        intruder.loop_stop()
        intruder.disconnect()
    # Plain MQTT on the TLS port: no CONNACK (0x20), only a TLS alert or a closed socket.
    connect = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test"
    with socket.create_connection(("127.0.0.1", ports["mqtts"]), timeout=10) as raw:
        raw.sendall(connect)
        try:
            answer = raw.recv(16)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"\x20"), answer
