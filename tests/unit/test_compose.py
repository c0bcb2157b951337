"""compose.yaml and the Dockerfile cannot run here (no Docker engine): read them and hold them to
the code. Each service's settings class says which environment variables it reads and which
dependencies it has; compose must provide exactly that, with production values and no secrets."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from infra.influxdb.provision_v2 import ProvisionSettings, plan
from services.auth.api.mqtt_api import mqtt_routes
from services.auth.settings import AuthSettings
from shared.edge import MQTT_EXCHANGE, EdgeSettings
from shared.security import SecuritySettings
from shared.settings import (
    AmqpSettings,
    InfluxSettings,
    IngestLimits,
    JwtSettings,
    MqttSettings,
    PostgresSettings,
    RedisSettings,
)
from tests.paths import ROOT

COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
# A versioned image: the version of pyproject.toml (CI publishes the same tag from a v* git tag).
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"millrace:{VERSION}"
PROVISION = "influx-provision"

# CONTRACT §10.
CONTRACT_PORTS = {
    "ingest_gateway": 8001,
    "query_api": 8002,
    "auth": 8003,
    "mqtt_bridge": 8004,
    "writer": 8005,
    "alerter": 8006,
}
# The HTTP doors: behind the TLS proxy, never published themselves.
DOORS = ("ingest_gateway", "query_api", "auth")
# Variables a service container may be given that no settings class reads: uvicorn reads
# FORWARDED_ALLOW_IPS (whose X-Forwarded-For to trust).
RUNTIME_ENV = {"FORWARDED_ALLOW_IPS"}
HEALTHY = "service_healthy"
COMPLETED = "service_completed_successfully"


@dataclass(frozen=True)
class Dependency:
    env: tuple[str, ...]  # must be set for the service to reach it
    hosts: dict[str, str]  # env var -> the compose service it must point at
    depends_on: dict[str, str]  # compose service -> condition


# Settings sub-model -> what it means for compose.
DEPENDENCIES: dict[type[BaseSettings], Dependency] = {
    AmqpSettings: Dependency(("AMQP_URL",), {"AMQP_URL": "rabbitmq"}, {"rabbitmq": HEALTHY}),
    PostgresSettings: Dependency(
        ("POSTGRES_URL",), {"POSTGRES_URL": "postgres"}, {"postgres": HEALTHY}
    ),
    RedisSettings: Dependency(("REDIS_URL",), {"REDIS_URL": "redis"}, {"redis": HEALTHY}),
    InfluxSettings: Dependency(
        ("INFLUX_URL", "INFLUX_TOKEN"),
        {"INFLUX_URL": "influxdb"},
        {"influxdb": HEALTHY, PROVISION: COMPLETED},
    ),
    # The MQTT edge is RabbitMQ's MQTT plugin: the same container, its MQTT listener.
    MqttSettings: Dependency(("MQTT_HOST",), {"MQTT_HOST": "rabbitmq"}, {"rabbitmq": HEALTHY}),
    JwtSettings: Dependency(("JWT_JWKS_URL",), {"JWT_JWKS_URL": "auth"}, {"auth": HEALTHY}),
}
# Sub-models that configure the service itself, not a connection to something else.
# EdgeSettings names the edge queue on RabbitMQ, which the bridge reaches through AMQP_URL.
NOT_DEPENDENCIES: set[type[BaseSettings]] = {
    IngestLimits,
    AuthSettings,
    SecuritySettings,
    EdgeSettings,
}


# Settings classes a service may build on its own, outside its Settings (``EdgeSettings()``).
SHARED_SETTINGS: dict[str, type[BaseSettings]] = {"EdgeSettings": EdgeSettings}
OS_ENVIRON = re.compile(r'os\.environ(?:\.get\(|\[)\s*"([A-Z][A-Z0-9_]*)"')
# Variables two services must be given the same value of: RabbitMQ asks auth about gateways'
# MQTT publishes and subscriptions, so auth must parse topics as the bridge does and know the
# alerter's topic prefix.
SHARED_VALUES = {
    "MQTT_BRIDGE_TOPIC_TEMPLATE": ("auth", "mqtt_bridge"),
    "ALERTER_MQTT_TOPIC": ("auth", "alerter"),
}


def configures_itself(sub: type[BaseSettings]) -> bool:
    """A sub-model of the service's own knobs: listed above, or defined in the service's own
    package (connections to other processes are all in shared/settings.py)."""
    return sub in NOT_DEPENDENCIES or sub.__module__.startswith("services.")


# Names of variables that hold secrets, and the only form their value may take in compose.
SECRET_NAME = re.compile(r"PASSWORD|_PASS$|TOKEN|SECRET|PRIVATE_KEY|REDISCLI_AUTH")
REQUIRED_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]*\}")
VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# ------------------------------------------------------------------ reading the files


def service_folders() -> list[str]:
    return sorted(
        p.name
        for p in (ROOT / "services").iterdir()
        if p.is_dir() and p.name.isidentifier() and not p.name.startswith("_")
    )


def settings_class(name: str) -> type[BaseSettings] | None:
    """The service's Settings, or None while the service has no settings.py yet."""
    if not (ROOT / "services" / name / "settings.py").exists():
        return None
    cls: type[BaseSettings] = importlib.import_module(f"services.{name}.settings").Settings
    return cls


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``, recursively."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        current = env.get(name)
        unset = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in ("?", ":?") and unset:
            raise KeyError(f"{name} is required ({arg})")
        if op in ("-", ":-") and unset:
            return arg
        return current or ""

    return VAR_REF.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


def raw_compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def _strings(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{where}[{i}]")
    elif isinstance(node, str):
        yield where, node


def referenced_variables() -> dict[str, str | None]:
    """Every variable compose.yaml interpolates -> its operator (None, '-', ':-', '?', ':?')."""
    return {
        m.group(1): m.group(2)
        for _, value in _strings(raw_compose())
        for m in VAR_REF.finditer(value)
    }


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


def synthetic_env() -> dict[str, str]:
    """What an operator's .env would give: .env.example's values, except that each secret gets
    a distinct URL-safe value (showing which secret ends up where). Variables with a default in
    compose.yaml are left unset, so the default is what gets checked."""
    example = env_example()
    env = {}
    for name, op in referenced_variables().items():
        if op in ("-", ":-"):
            continue
        if SECRET_NAME.search(name) or name not in example:
            env[name] = f"v{name.lower().replace('_', '')}"
        else:
            env[name] = example[name]
    return env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = interpolate(raw_compose(), synthetic_env())
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svcs: dict[str, dict[str, Any]] = compose["services"]
    return svcs


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment is written as a mapping"
    return {k: "" if v is None else str(v) for k, v in env.items()}


def env_names(cls: type[BaseSettings]) -> set[str]:
    """Environment variables a settings class reads (aliases, or prefix + field name)."""
    names: set[str] = set()
    prefix = str(cls.model_config.get("env_prefix") or "")
    for field_name, field in cls.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            names |= env_names(annotation)
            continue
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices}
        else:
            names.add((prefix + field_name).upper())
    return names


def read_outside_settings(name: str) -> set[str]:
    """Variables a service's code reads besides its Settings: ``os.environ`` look-ups and the
    shared settings classes it builds itself (auth's MQTT edge endpoints build EdgeSettings())."""
    names: set[str] = set()
    for path in sorted((ROOT / "services" / name).rglob("*.py")):
        text = path.read_text()
        names |= set(OS_ENVIRON.findall(text))
        for cls_name, cls in SHARED_SETTINGS.items():
            if re.search(rf"\b{cls_name}\(\)", text):
                names |= env_names(cls)
    return names


def test_code_scan_finds_what_auth_reads_outside_its_settings() -> None:
    outside = read_outside_settings("auth")
    assert {"ALERTER_MQTT_TOPIC", "MQTT_EDGE_VHOST", "MQTT_BRIDGE_TOPIC_TEMPLATE"} <= outside
    assert not read_outside_settings("writer") & {"ALERTER_MQTT_TOPIC", "MQTT_EDGE_QUEUE"}


def sub_models(cls: type[BaseSettings]) -> Iterator[type[BaseSettings]]:
    for field in cls.model_fields.values():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            yield annotation


def dependencies(name: str) -> list[Dependency]:
    cls = _settings(name)
    found = []
    for sub in sub_models(cls):
        if configures_itself(sub):
            continue
        assert sub in DEPENDENCIES, (
            f"services.{name} has a new settings sub-model {sub.__name__}: say in this test what "
            "compose must provide for it (DEPENDENCIES) or that it needs nothing (NOT_DEPENDENCIES)"
        )
        found.append(DEPENDENCIES[sub])
    return found


def _settings(name: str) -> type[BaseSettings]:
    cls = settings_class(name)
    assert cls is not None
    return cls


APP_SERVICES = sorted(CONTRACT_PORTS)
WRITTEN = [n for n in APP_SERVICES if settings_class(n) is not None]


# ------------------------------------------------------------------ the Compose specification


def check_compose_spec(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema (a dev dependency) against its vendored Compose specification schema:
    offline, what `docker compose config` would refuse as malformed."""
    tool = Path(sys.executable).with_name("check-jsonschema")
    if not tool.exists():
        pytest.skip("check-jsonschema is not installed (make install)")
    return subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_follows_the_compose_specification() -> None:
    done = check_compose_spec(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_specification_check_rejects_a_misspelt_key(tmp_path: Path) -> None:
    text = COMPOSE.read_text().replace("    healthcheck:\n", "    healthchek:\n", 1)
    (tmp_path / "compose.yaml").write_text(text)
    assert check_compose_spec(tmp_path / "compose.yaml").returncode != 0


# ------------------------------------------------------------------ services and ports


def test_every_service_folder_and_contract_service_runs_in_compose(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in sorted(set(service_folders()) | set(CONTRACT_PORTS)):
        assert name in services, f"compose has no service {name}"
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]
        assert services[name]["image"] == IMAGE
    assert set(service_folders()) <= set(CONTRACT_PORTS), "a service with no contract port"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_port_matches_contract_and_settings_alias(
    name: str, services: dict[str, dict[str, Any]]
) -> None:
    port = CONTRACT_PORTS[name]
    alias = f"{name.upper()}_PORT"
    cls = settings_class(name)
    if cls is not None:
        field = cls.model_fields["port"]
        assert field.validation_alias == alias, "the port variable follows <SERVICE>_PORT"
        assert field.default == port
    service = services[name]
    assert environment(service).get(alias) == str(port)
    for mapping in service.get("ports", []):
        assert str(mapping).split(":")[-1] == str(port), f"{name} publishes {mapping}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_healthcheck_hits_ready_on_its_port(name: str, services: dict[str, dict[str, Any]]) -> None:
    check = services[name]["healthcheck"]
    command = " ".join(check["test"])
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert re.search(
        rf"//(127\.0\.0\.1|localhost):{CONTRACT_PORTS[name]}/(ready|health)\b", command
    )
    # The slim image has no curl: the check must use what the image certainly has.
    assert check["test"][1] == "python"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_production_environment(name: str, services: dict[str, dict[str, Any]]) -> None:
    env = environment(services[name])
    assert env["MILLRACE_ENV"] == "production"
    assert env["BIND_HOST"] == "0.0.0.0"
    assert services[name]["restart"] in ("unless-stopped", "always", "on-failure")


# ------------------------------------------------------------------ dependencies


@pytest.mark.parametrize("name", WRITTEN)
def test_environment_reaches_every_dependency(
    name: str, services: dict[str, dict[str, Any]]
) -> None:
    service = services[name]
    env = environment(service)
    depends_on = service.get("depends_on", {})
    assert isinstance(depends_on, dict), "depends_on is written with conditions"
    for dep in dependencies(name):
        for var in dep.env:
            assert env.get(var), f"{name} needs {var}"
        for var, host in dep.hosts.items():
            if host == name:
                continue
            value = env[var]
            actual = urlsplit(value).hostname if "://" in value else value
            assert actual == host, f"{name}: {var}={value} should point at {host}"
        for target, condition in dep.depends_on.items():
            if target == name:
                continue
            assert target in depends_on, f"{name} must depend on {target}"
            assert depends_on[target] == {"condition": condition}


@pytest.mark.parametrize("name", WRITTEN)
def test_every_variable_set_is_read_by_the_service(
    name: str, services: dict[str, dict[str, Any]]
) -> None:
    read = env_names(_settings(name)) | read_outside_settings(name)
    unknown = set(environment(services[name])) - read - RUNTIME_ENV
    assert not unknown, f"{name} is given variables its code never reads: {sorted(unknown)}"


@pytest.mark.parametrize("var", sorted(SHARED_VALUES))
def test_both_sides_of_the_edge_get_the_same_topics(
    var: str, services: dict[str, dict[str, Any]]
) -> None:
    readers = SHARED_VALUES[var]
    for name in readers:
        assert var in env_names(_settings(name)) | read_outside_settings(name), (name, var)
    values = {name: environment(services[name]).get(var) for name in readers}
    assert None not in values.values() and len(set(values.values())) == 1, values


@pytest.mark.parametrize("name", WRITTEN)
def test_settings_accept_the_compose_environment(
    name: str, services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production validators (no guest AMQP password, a signing key, ...) pass on what compose
    gives the container."""
    for var in list(os.environ):
        monkeypatch.delenv(var)
    for var, value in environment(services[name]).items():
        monkeypatch.setenv(var, value)
    settings: Any = _settings(name)()
    assert settings.production
    assert settings.port == CONTRACT_PORTS[name]
    assert settings.bind_host == "0.0.0.0"


def test_dependency_targets_exist_and_are_healthchecked(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for target, spec in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if spec["condition"] == HEALTHY:
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
    for name in ("influxdb", "rabbitmq", "postgres", "redis"):
        assert "healthcheck" in services[name], name
    assert "mosquitto" not in services, "the MQTT edge is RabbitMQ's"
    # No cycle: every service can start once what it depends on has.
    started: set[str] = set()
    pending = dict(services)
    while pending:
        ready = [n for n, s in pending.items() if set(s.get("depends_on", {})) <= started]
        assert ready, f"dependency cycle among {sorted(pending)}"
        started |= set(ready)
        for n in ready:
            del pending[n]


def test_credentials_match_between_clients_and_servers(
    services: dict[str, dict[str, Any]],
) -> None:
    amqp = urlsplit(environment(services["writer"])["AMQP_URL"])
    rabbit = environment(services["rabbitmq"])
    assert (amqp.username, amqp.password) == (
        rabbit["RABBITMQ_DEFAULT_USER"],
        rabbit["RABBITMQ_DEFAULT_PASS"],
    )
    pg_url = urlsplit(environment(services["query_api"])["POSTGRES_URL"])
    pg = environment(services["postgres"])
    assert (pg_url.username, pg_url.password, pg_url.path) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        "/" + pg["POSTGRES_DB"],
    )
    redis_password = urlsplit(environment(services["query_api"])["REDIS_URL"]).password
    command = services["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == redis_password
    influx = environment(services["influxdb"])
    for name in ("writer", "query_api", PROVISION):
        assert (
            environment(services[name])["INFLUX_TOKEN"]
            == influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
        )
    assert environment(services[PROVISION])["INFLUX_ORG"] == influx["DOCKER_INFLUXDB_INIT_ORG"]
    database = environment(services["writer"])["INFLUX_DATABASE"]
    assert influx["DOCKER_INFLUXDB_INIT_BUCKET"] == f"{database}/raw"


def test_declared_fields_are_the_same_everywhere(services: dict[str, dict[str, Any]]) -> None:
    """INGEST_EXTRA_FIELDS decides what is validated, aggregated and queried: one value for all."""
    readers = [n for n in WRITTEN if IngestLimits in set(sub_models(_settings(n)))]
    assert readers
    values = {n: environment(services[n]).get("INGEST_EXTRA_FIELDS") for n in readers}
    assert None not in values.values(), values
    assert len(set(values.values())) == 1, values


def test_auth_reads_its_key_from_a_compose_secret(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    auth = services["auth"]
    [secret] = auth["secrets"]
    assert environment(auth)["AUTH_PRIVATE_KEY_FILE"] == f"/run/secrets/{secret}"
    assert "file" in compose["secrets"][secret]
    for name in APP_SERVICES:
        if name != "auth":
            assert "secrets" not in services[name], "the signing key is held by auth alone"


# ------------------------------------------------------------------ InfluxDB 2.x provisioning


def test_influx_provision_runs_the_module_in_the_image(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = services[PROVISION]
    assert job["image"] == IMAGE
    assert job["restart"] == "no"
    command = job["command"]
    assert command[:2] == ["python", "-m"]
    module = command[2]
    path = ROOT / (module.replace(".", "/") + ".py")
    assert path.exists(), module
    for package in path.relative_to(ROOT).parents:
        if package != Path("."):
            assert (ROOT / package / "__init__.py").exists(), f"{package} is not a package"
    assert job["depends_on"] == {"influxdb": {"condition": HEALTHY}}
    env = environment(job)
    assert set(env) <= env_names(ProvisionSettings)
    for var in list(os.environ):
        monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    tiers = plan(ProvisionSettings())
    assert [t.rp for t in tiers] == ["raw", "hourly", "daily"]


# ------------------------------------------------------------------ scaling and images


@pytest.mark.parametrize("name", ["writer", "mqtt_bridge", *DOORS])
def test_scalable_services_publish_no_port(name: str, services: dict[str, dict[str, Any]]) -> None:
    """`docker compose up --scale NAME=N`: no container_name, no hostname, no host port."""
    service = services[name]
    assert "container_name" not in service
    assert "hostname" not in service
    assert not service.get("ports"), "a published host port would clash between copies"


def test_doors_trust_forwarded_addresses_only_because_nothing_else_reaches_them(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in DOORS:
        assert environment(services[name]).get("FORWARDED_ALLOW_IPS") == "*"
        assert not services[name].get("ports")
    for name in set(APP_SERVICES) - set(DOORS):
        assert "FORWARDED_ALLOW_IPS" not in environment(services[name])


def test_only_tls_and_monitoring_ports_are_published(services: dict[str, dict[str, Any]]) -> None:
    published = {
        name: sorted(str(p).split(":")[-1] for p in service.get("ports", []))
        for name, service in services.items()
        if service.get("ports")
    }
    assert published == {
        "proxy": ["443"],
        "rabbitmq": ["8883"],
        "prometheus": ["9090"],
        "grafana": ["3000"],
    }


def test_every_image_is_pinned_to_a_release(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag, f"{name}: {image} has no tag"
        # PostgreSQL's releases are MAJOR.MINOR (16.10); everyone else's MAJOR.MINOR.PATCH.
        release = r"\d+\.\d+" if repo == "postgres" else r"v?\d+\.\d+\.\d+"
        assert re.match(rf"{release}(-|$)", tag), f"{name}: {image} is not pinned to a release"
    assert services["rabbitmq"]["image"].split(":")[1].startswith("4."), "the current 4.x line"


def test_app_services_share_one_image_built_from_the_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in [*APP_SERVICES, PROVISION]:
        service = services[name]
        assert service["image"] == IMAGE
        build = service["build"]
        assert build["context"] == "."
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE


# ------------------------------------------------------------------ the MQTT edge (RabbitMQ)

RABBITMQ_DIR = ROOT / "infra" / "rabbitmq"
EDGE_CONF = RABBITMQ_DIR / "60-millrace-edge.conf"
EDGE_PLUGINS = {"rabbitmq_mqtt", "rabbitmq_auth_backend_http"}
DEPS_SH = ROOT / "infra" / "local" / "deps.sh"
CONFIG_KEYS = RABBITMQ_DIR / "config-keys.txt"


def rabbitmq_conf(text: str) -> dict[str, str]:
    """rabbitmq.conf (sysctl format): key = value per line, # comments."""
    conf: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not a key = value line: {line!r}"
            assert key.strip() not in conf, f"{key.strip()} set twice"
            conf[key.strip()] = value.strip()
    return conf


def local_edge_config() -> dict[str, str]:
    """The keys infra/local/deps.sh writes for the local node (its edge_config function), with
    its shell variables left in."""
    body = re.search(r"^edge_config\(\) \{.*?^\}", DEPS_SH.read_text(), re.M | re.S)
    assert body, "infra/local/deps.sh has no edge_config()"
    lines = re.findall(r'^\s*echo "([^"]+)"', body.group(0), re.M)
    auth = re.search(r'\bauth="([^"]+)"', body.group(0))
    assert auth, "edge_config() names auth's base URL"
    return rabbitmq_conf("\n".join(lines).replace("$auth", auth.group(1)))


def auth_route_paths() -> set[str]:
    return {route.path for route in mqtt_routes()}


def check_edge_config(conf: dict[str, str], auth_base: str) -> None:
    """What the edge needs, whichever deployment: the local node's keys with the same values,
    except that auth is reached at auth_base; every auth path one that auth serves."""
    local = local_edge_config()
    for key, value in local.items():
        if key.startswith("mqtt.listeners."):
            continue  # where the listener binds is the deployment's own
        assert key in conf, f"the edge needs {key} (as infra/local/deps.sh sets it)"
        if key.startswith("auth_http.") and key.endswith("_path"):
            expected = auth_base + urlsplit(value).path
            assert conf[key] == expected, (key, conf[key], expected)
            assert conf[key].removeprefix(auth_base) in auth_route_paths(), conf[key]
        else:
            assert conf[key] == value, (key, conf[key], value)
    assert conf["mqtt.exchange"] == MQTT_EXCHANGE
    assert conf["mqtt.allow_anonymous"] == "false"
    backends = [conf[k] for k in sorted(k for k in conf if k.startswith("auth_backends."))]
    assert backends == ["internal", "http"], "services are RabbitMQ users, gateways auth's"


def rabbitmq_schema_keys() -> list[re.Pattern[str]]:
    """The keys RabbitMQ 4.x accepts (infra/rabbitmq/config-keys.txt); ``$x`` levels are free."""
    patterns = []
    for key in CONFIG_KEYS.read_text().splitlines():
        if key.strip() and not key.startswith("#"):
            parts = [r"[^.]+" if p.startswith("$") else re.escape(p) for p in key.split(".")]
            patterns.append(re.compile(r"\.".join(parts)))
    return patterns


def check_keys_exist_in_rabbitmq(conf: dict[str, str]) -> None:
    known = rabbitmq_schema_keys()
    unknown = [k for k in conf if not any(p.fullmatch(k) for p in known)]
    assert not unknown, f"RabbitMQ's configuration schemas have no {unknown}"


def test_the_schema_check_rejects_a_misspelt_key() -> None:
    with pytest.raises(AssertionError, match=r"auth_http\.user_pth"):
        check_keys_exist_in_rabbitmq({"auth_http.user_pth": "http://auth:8003/x"})


def test_rabbitmq_serves_the_mqtt_edge_with_the_plugins_and_configuration(
    services: dict[str, dict[str, Any]],
) -> None:
    raw = raw_compose()["services"]["rabbitmq"]["volumes"]
    assert "./infra/rabbitmq/enabled_plugins:/etc/rabbitmq/enabled_plugins:ro" in raw
    conf_mount = f"./infra/rabbitmq/{EDGE_CONF.name}:/etc/rabbitmq/conf.d/{EDGE_CONF.name}:ro"
    assert conf_mount in raw
    [tls] = [v for v in raw if v.endswith(":/etc/rabbitmq/tls:ro")]
    assert REQUIRED_REF.match(tls), "the certificates come from TLS_DIR"
    text = (RABBITMQ_DIR / "enabled_plugins").read_text().strip()
    m = re.fullmatch(r"\[([\w,\s]*)\]\.", text)
    assert m, f"enabled_plugins is an Erlang list of atoms ending in '.': {text}"
    plugins = {p.strip() for p in m.group(1).split(",")}
    # The image's own (management, Prometheus on 15692, scraped) and the edge's.
    assert {"rabbitmq_management", "rabbitmq_prometheus"} | EDGE_PLUGINS <= plugins
    conf = rabbitmq_conf(EDGE_CONF.read_text())
    check_edge_config(conf, f"http://auth:{CONTRACT_PORTS['auth']}")
    # Gateways: TLS on the published port. Plain MQTT: the port the services' MQTT_PORT names.
    published = [str(p).split(":")[-1] for p in services["rabbitmq"]["ports"]]
    assert published == [conf["mqtt.listeners.ssl.default"]] == ["8883"]
    for name in ("mqtt_bridge", "alerter"):
        env = environment(services[name])
        assert conf["mqtt.listeners.tcp.default"] == env["MQTT_PORT"]
        assert env["MQTT_PORT"] not in published, "plain MQTT is never published"
        assert "MQTT_USERNAME" not in env, "services sign in as the AMQP_URL user"
    # The certificate files are those infra/tls/dev-certs.sh writes, under the TLS mount.
    assert conf["ssl_options.certfile"] == "/etc/rabbitmq/tls/server.crt"
    assert conf["ssl_options.keyfile"] == "/etc/rabbitmq/tls/server.key"
    certs = (ROOT / "infra" / "tls" / "dev-certs.sh").read_text()
    assert "-out server.crt" in certs and "-keyout server.key" in certs
    assert conf["ssl_options.verify"] == "verify_none", "gateways sign in with a secret"
    assert {v for k, v in conf.items() if k.startswith("ssl_options.versions.")} <= {
        "tlsv1.2",
        "tlsv1.3",
    }
    # auth's vhost answer follows MQTT_EDGE_VHOST (default "/"): the edge's must be the same.
    assert conf["mqtt.vhost"] == environment(services["auth"]).get("MQTT_EDGE_VHOST", "/")
    check_keys_exist_in_rabbitmq(conf)
    proxy = raw_compose()["services"]["proxy"]["volumes"]
    assert any(REQUIRED_REF.match(v) and v.endswith(":/etc/nginx/tls:ro") for v in proxy)


def test_the_broker_reaches_auth_and_the_bridges_scale(services: dict[str, dict[str, Any]]) -> None:
    """RabbitMQ calls auth over HTTP (one compose network for all); the bridges are competing
    consumers of the edge queue, so nothing pins them to one copy."""
    networks = {
        name: set(service.get("networks") or ["default"]) for name, service in services.items()
    }
    assert networks["rabbitmq"] & networks["auth"], "RabbitMQ must reach auth"
    bridge = services["mqtt_bridge"]
    assert "container_name" not in bridge and "hostname" not in bridge
    assert environment(bridge).get("MQTT_EDGE_QUEUE", EdgeSettings().queue) == "mqtt.telemetry"


# ------------------------------------------------------------------ secrets


def test_no_secret_has_a_value_in_compose() -> None:
    doc = raw_compose()
    for name, service in doc["services"].items():
        for var, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(var) and not var.endswith("_FILE"):
                assert REQUIRED_REF.fullmatch(str(value)), f"{name}.{var} must be ${{VAR:?...}}"
        command = service.get("command") or []
        if "--requirepass" in command:
            assert REQUIRED_REF.fullmatch(command[command.index("--requirepass") + 1])
    for where, value in _strings(doc):
        # A password inside a URL (scheme://user:password@host) comes from a required variable.
        for m in re.finditer(r"://(?:\$\{[^}]*\}|[^:/@\s]*):(.*?)@", value):
            assert REQUIRED_REF.fullmatch(m.group(1)), f"{where}: literal password in {value}"
    for var, op in referenced_variables().items():
        if SECRET_NAME.search(var):
            assert op in ("?", ":?"), f"${{{var}}} must be required (:?), never defaulted"


def test_env_example_lists_every_variable_with_placeholders() -> None:
    example = env_example()
    missing = set(referenced_variables()) - set(example)
    assert not missing, f".env.example lacks {sorted(missing)}"
    for var, value in example.items():
        if SECRET_NAME.search(var) and not var.endswith(("_FILE", "_PATH")):
            assert value == "change-me", f"{var} in .env.example must be a placeholder"
    # The filled-in copy must never be committed.
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    interpolate(raw_compose(), example)  # every required variable is satisfied by the example


# ------------------------------------------------------------------ Dockerfile


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions (KEYWORD, arguments) grouped by stage; continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, " ".join(args.split())))
    return stages


def test_dockerfile_is_multi_stage_and_runs_as_non_root() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    assert any(k == "COPY" and a.startswith("--from=") for k, a in final)
    users = [a for k, a in final if k == "USER"]
    assert users, "the runtime stage sets USER"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_installs_the_lock_with_hashes() -> None:
    runs = [a for stage in dockerfile_stages() for k, a in stage if k == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert installs
    for run in installs:
        assert "--require-hashes" in run
        assert "requirements.lock" in run


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        rx = re.escape(glob).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        rx = rx.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append((negate, re.compile(rx)))
    return patterns


def dockerignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a directory covers
    everything under it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for negate, rx in _ignore_patterns():
        if any(rx.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerfile_copies_exist_and_are_in_the_build_context() -> None:
    for stage in dockerfile_stages():
        for keyword, args in stage:
            if keyword != "COPY" or args.startswith("--from="):
                continue
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            for source in sources:
                path = ROOT / source
                assert path.exists(), source
                files = [path] if path.is_file() else sorted(path.rglob("*.py"))
                assert files, source
                for file in files:
                    if "__pycache__" in file.parts:
                        continue
                    rel = file.relative_to(ROOT).as_posix()
                    assert not dockerignored(rel), f"{rel} is excluded by .dockerignore"
    for secret in (".env", ".run/env", ".venv/bin/python", "tests/conftest.py", "key.pem"):
        assert dockerignored(secret), f"{secret} would be sent to the build context"


def test_the_image_carries_the_browser_libraries_of_the_lock() -> None:
    """Swagger UI and the console's chart are served by the services themselves: the image
    installs exactly web/package-lock.json and puts it where shared/webassets.py looks."""
    stages = dockerfile_stages()
    web = [s for s in stages if any(k == "RUN" and "npm ci" in a for k, a in s)]
    assert web, "no stage runs npm ci"
    assert any(k == "COPY" and "web/package-lock.json" in a for k, a in web[0])
    final = stages[-1]
    assert any(
        k == "COPY" and a.startswith("--from=") and "web/node_modules" in a for k, a in final
    )
    assert any(k == "WORKDIR" and a == "/app" for k, a in final)
