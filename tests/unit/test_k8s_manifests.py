"""infra/k8s cannot be applied here (no cluster): render it and hold it to the Kubernetes schemas,
the operators' CRD schemas and the code. The base and both overlays are rendered by kustomize
(`kubectl kustomize`, the kustomize built into kubectl); each service's settings class says
which variables it reads and which dependencies it talks to, and the manifests must agree."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from services.alerter.settings import Settings as AlerterSettings
from shared.edge import MQTT_EXCHANGE, EdgeSettings
from shared.settings import (
    AmqpSettings,
    InfluxSettings,
    JwtSettings,
    MqttSettings,
    PostgresSettings,
    RedisSettings,
)
from tests.paths import ROOT
from tests.unit.test_compose import (
    CONTRACT_PORTS,
    DEPENDENCIES,
    EDGE_CONF,
    EDGE_PLUGINS,
    RUNTIME_ENV,
    SHARED_VALUES,
    WRITTEN,
    check_edge_config,
    check_keys_exist_in_rabbitmq,
    configures_itself,
    env_names,
    rabbitmq_conf,
    read_outside_settings,
    service_folders,
    settings_class,
    sub_models,
)

K8S = ROOT / "infra" / "k8s"
OVERLAYS = ["dev", "production"]
KUBERNETES_VERSION = "1.32"
CRD_SCHEMAS = K8S / "crds" / "schemas.json"
SECRETS_EXAMPLE = K8S / "base" / "secrets.example.yaml"

# Settings sub-model -> the workload (app.kubernetes.io/name) it connects to.
TARGET_OF: dict[type[BaseSettings], str] = {
    AmqpSettings: "rabbitmq",
    PostgresSettings: "postgres",
    RedisSettings: "redis",
    InfluxSettings: "influxdb",
    MqttSettings: "mqtt-edge",
    JwtSettings: "auth",
}
# Pod labels of each target, and the port it serves its clients on.
TARGETS = {
    "auth": ({"app.kubernetes.io/name": "auth"}, 8003),
    "rabbitmq": ({"app.kubernetes.io/name": "rabbitmq"}, 5672),
    "postgres": ({"cnpg.io/cluster": "postgres"}, 5432),
    "redis": ({"app.kubernetes.io/name": "redis"}, 6379),
    "influxdb": ({"app.kubernetes.io/name": "influxdb"}, 8086),
    # The MQTT edge: RabbitMQ's own MQTT listener (plain MQTT, inside the cluster).
    "mqtt-edge": ({"app.kubernetes.io/name": "rabbitmq"}, 1883),
}
# Gateways' MQTT over TLS, the one MQTT port reachable from outside.
MQTT_TLS_PORT = 8883
# Queue consumers and the queue each one drains (the settings name the queues).
CONSUMERS = {
    "writer": AmqpSettings().queue,
    "query_api": AmqpSettings().dead_letter,
    "mqtt_bridge": EdgeSettings().queue,
}
HTTP_DOORS = ["ingest_gateway", "query_api", "auth"]


def k8s_name(service: str) -> str:
    return service.replace("_", "-")


# ------------------------------------------------------------------ rendering


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    path = K8S / "base" if overlay == "base" else K8S / "overlays" / overlay
    return tuple(kustomize(path))


def objects(overlay: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [copy.deepcopy(d) for d in rendered(overlay) if kind is None or d["kind"] == kind]


def one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in objects(overlay, kind) if d["metadata"]["name"] == name]
    return found


def deployment(overlay: str, service: str) -> dict[str, Any]:
    return one(overlay, "Deployment", k8s_name(service))


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [c] = workload["spec"]["template"]["spec"]["containers"]
    return c


@cache
def crd_schemas() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CRD_SCHEMAS.read_text())["schemas"]
    return data


def example_secrets() -> dict[str, dict[str, str]]:
    return {
        d["metadata"]["name"]: d["stringData"]
        for d in yaml.safe_load_all(SECRETS_EXAMPLE.read_text())
        if d
    }


def resolved_env(overlay: str, workload: dict[str, Any]) -> dict[str, str]:
    """The container's environment with ConfigMap values filled in and each secret given a
    distinct realistic value (secrets.example.yaml with change-me replaced)."""
    config = {d["metadata"]["name"]: d.get("data", {}) for d in objects(overlay, "ConfigMap")}
    secrets = example_secrets()
    env: dict[str, str] = {}
    for var in container(workload).get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        ref = var["valueFrom"]
        if "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            env[var["name"]] = config[r["name"]][r["key"]]
        elif "fieldRef" in ref:
            assert ref["fieldRef"]["fieldPath"] == "metadata.name", ref
            env[var["name"]] = f"{workload['metadata']['name']}-5d8f7c9b4-x2k7q"
        else:
            r = ref["secretKeyRef"]
            value = secrets[r["name"]][r["key"]]
            env[var["name"]] = value.replace("change-me", f"s3cret{r['key'].lower()}")
    return env


# ------------------------------------------------------------------ schemas


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_builtin_objects_match_the_kubernetes_schemas(overlay: str) -> None:
    checked = 0
    for doc in objects(overlay):
        if "/" in doc["apiVersion"] and ".k8s.io/" not in doc["apiVersion"]:
            group = doc["apiVersion"].split("/")[0]
            if group not in ("apps", "batch", "policy", "autoscaling"):
                continue  # a custom resource: checked against its CRD below
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 20


def test_the_kubernetes_schema_check_rejects_a_misspelt_field() -> None:
    doc = deployment("production", "writer")
    container(doc)["readinessProbes"] = container(doc).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_custom_resources_match_their_operators_crd_schemas(overlay: str) -> None:
    schemas = crd_schemas()
    seen = set()
    for doc in objects(overlay):
        group = doc["apiVersion"].split("/")[0]
        if "." not in group or group.endswith(".k8s.io"):
            continue
        key = f"{doc['apiVersion']}/{doc['kind']}"
        assert key in schemas, f"no CRD schema for {key}: add its CRD to infra/k8s/crds"
        jsonschema.validate(doc, schemas[key])
        seen.add(doc["kind"])
    assert {"ScaledObject", "RabbitmqCluster", "Cluster", "TriggerAuthentication"} <= seen


@pytest.mark.parametrize(
    ("kind", "name", "path", "typo"),
    [
        ("ScaledObject", "writer", ["spec"], "minReplicas"),
        ("RabbitmqCluster", "rabbitmq", ["spec"], "replica"),
        ("Cluster", "postgres", ["spec", "bootstrap", "initdb"], "ownr"),
    ],
)
def test_the_crd_schema_check_rejects_a_misspelt_field(
    kind: str, name: str, path: list[str], typo: str
) -> None:
    doc = one("production", kind, name)
    node = doc
    for key in path:
        node = node[key]
    node[typo] = 1
    key = f"{doc['apiVersion']}/{doc['kind']}"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, crd_schemas()[key])


def test_no_secret_values_in_the_manifests() -> None:
    for overlay in ["base", *OVERLAYS]:
        assert not objects(overlay, "Secret"), "Secrets are created out of band, never committed"
    for name, data in example_secrets().items():
        for key, value in data.items():
            if key != "username":
                assert "change-me" in value, f"{name}.{key} must be a placeholder"


# ------------------------------------------------------------------ one Deployment per service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_runs_as_a_deployment(overlay: str) -> None:
    names = {d["metadata"]["name"] for d in objects(overlay, "Deployment")}
    for service in sorted(set(service_folders()) | set(CONTRACT_PORTS)):
        assert k8s_name(service) in names, f"no Deployment for {service}"
        c = container(deployment(overlay, service))
        assert c["command"] == ["python", "-m", f"services.{service}"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", WRITTEN)
def test_probes_resources_and_security(overlay: str, service: str) -> None:
    doc = deployment(overlay, service)
    pod = doc["spec"]["template"]["spec"]
    c = container(doc)
    port = CONTRACT_PORTS[service]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": port}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]
    sec = c["securityContext"]
    assert sec["readOnlyRootFilesystem"] is True
    assert sec["allowPrivilegeEscalation"] is False
    assert sec["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user (Dockerfile)
    assert pod["automountServiceAccountToken"] is False
    # A read-only root needs a writable /tmp.
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # SIGTERM drains before SIGKILL: the grace period outlasts SHUTDOWN_TIMEOUT_S.
    cls = settings_class(service)
    assert cls is not None
    assert pod["terminationGracePeriodSeconds"] > cls.model_fields["shutdown_timeout_s"].default


def test_every_app_container_runs_one_image_pinned_per_overlay() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for overlay in OVERLAYS:
        images = set()
        for kind in ("Deployment", "Job"):
            for doc in objects(overlay, kind):
                c = container(doc) if kind == "Deployment" else doc["spec"]["template"]["spec"]
                if kind == "Job":
                    [c] = c["containers"]
                images.add(c["image"])
        assert len(images) == 1, images
        [image] = images
        tag = image.rsplit(":", 1)[1]
        assert tag != "latest"
        if overlay == "production":
            assert tag == version, "production runs the released version (pyproject.toml)"
    for doc in objects("production"):
        for c in _all_containers(doc):
            assert ":" in c["image"] and not c["image"].endswith(":latest"), c["image"]


def _all_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod = spec.get("template", {}).get("spec", {})
    return list(pod.get("containers", [])) + list(pod.get("initContainers", []))


# ------------------------------------------------------------------ environment


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", WRITTEN)
def test_environment_is_what_the_settings_read(overlay: str, service: str) -> None:
    cls = settings_class(service)
    assert cls is not None
    doc = deployment(overlay, service)
    names = [v["name"] for v in container(doc)["env"]]
    assert len(names) == len(set(names)), "a variable is set twice"
    unknown = set(names) - env_names(cls) - read_outside_settings(service) - RUNTIME_ENV
    assert not unknown, f"{service} is given variables its code never reads: {sorted(unknown)}"
    assert "envFrom" not in container(doc), "each variable is listed, none injected wholesale"
    for sub in sub_models(cls):
        if configures_itself(sub):
            continue
        assert sub in DEPENDENCIES, f"new settings sub-model {sub.__name__}"
        for var in DEPENDENCIES[sub].env:
            assert var in names, f"{service} needs {var}"
    env = resolved_env(overlay, doc)
    assert env[f"{service.upper()}_PORT"] == str(CONTRACT_PORTS[service])


@pytest.mark.parametrize("service", WRITTEN)
def test_settings_accept_the_deployment_environment(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production validators (a real AMQP password, a PostgreSQL password, a signing key)
    pass on what the production Deployment gives the container."""
    for var in list(os.environ):
        monkeypatch.delenv(var)
    env = resolved_env("production", deployment("production", service))
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    cls = settings_class(service)
    assert cls is not None
    if service == "auth":
        # The key file is a mounted Secret: point at a real key for the check.
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Path(os.environ.get("TMPDIR", "/tmp")) / f"k8s-test-key-{os.getpid()}.pem"
        key.write_bytes(
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        monkeypatch.setenv("AUTH_PRIVATE_KEY_FILE", str(key))
    try:
        settings: Any = cls()
    finally:
        if service == "auth":
            key.unlink()
    assert settings.production
    assert settings.port == CONTRACT_PORTS[service]
    assert settings.bind_host == "0.0.0.0"


def test_the_auth_signing_key_is_mounted_from_its_secret() -> None:
    doc = deployment("production", "auth")
    env = resolved_env("production", doc)
    mounts = {m["name"]: m["mountPath"] for m in container(doc)["volumeMounts"]}
    volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}
    key_file = Path(env["AUTH_PRIVATE_KEY_FILE"])
    [(name, volume)] = [(n, v) for n, v in volumes.items() if "secret" in v]
    assert volume["secret"]["secretName"] == "millrace-auth-key"
    assert key_file.parent == Path(mounts[name])
    assert key_file.name in example_secrets()["millrace-auth-key"]
    for service in CONTRACT_PORTS:
        if service != "auth":
            pod = deployment("production", service)["spec"]["template"]["spec"]
            assert not [v for v in pod["volumes"] if "secret" in v], "the key is auth's alone"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_reference_exists_in_the_example(overlay: str) -> None:
    secrets = example_secrets()
    for doc in objects(overlay):
        for c in _all_containers(doc):
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], {}), ref
    trigger = one(overlay, "TriggerAuthentication", "rabbitmq-trigger")
    for ref in trigger["spec"]["secretTargetRef"]:
        assert ref["key"] in secrets[ref["name"]]


@pytest.mark.parametrize("var", sorted(SHARED_VALUES))
def test_both_sides_of_the_edge_get_the_same_topics(var: str) -> None:
    values = {
        s: resolved_env("production", deployment("production", s)).get(var)
        for s in SHARED_VALUES[var]
    }
    assert None not in values.values() and len(set(values.values())) == 1, values


def test_extra_fields_are_the_same_for_every_reader() -> None:
    values = {
        s: resolved_env("production", deployment("production", s)).get("INGEST_EXTRA_FIELDS")
        for s in ("ingest_gateway", "mqtt_bridge", "writer", "query_api")
    }
    assert None not in values.values() and len(set(values.values())) == 1, values


# ------------------------------------------------------------------ scaling


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_http_services_autoscale_and_queue_consumers_scale_on_their_queue(overlay: str) -> None:
    hpas = {
        d["spec"]["scaleTargetRef"]["name"]: d for d in objects(overlay, "HorizontalPodAutoscaler")
    }
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in objects(overlay, "ScaledObject")}
    assert not set(hpas) & set(scaled), "KEDA makes its own HPA: one autoscaler per Deployment"
    for service, queue in CONSUMERS.items():
        so = scaled[k8s_name(service)]
        triggers = [t for t in so["spec"]["triggers"] if t["type"] == "rabbitmq"]
        assert [t["metadata"]["queueName"] for t in triggers] == [queue]
        for t in triggers:
            assert t["metadata"]["mode"] == "QueueLength"
            assert float(t["metadata"]["value"]) > 0
            assert t["authenticationRef"]["name"] == "rabbitmq-trigger"
            assert "host" not in t["metadata"], "the AMQP URL holds a password: Secret only"
        assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]
    for service in HTTP_DOORS:
        name = k8s_name(service)
        assert name in hpas or name in scaled, f"{service} has no autoscaler"
        env = {v["name"]: v.get("value") for v in container(deployment(overlay, service))["env"]}
        assert env.get("FORWARDED_ALLOW_IPS") == "*", "the client address from the ingress"
        if name in hpas:
            spec = hpas[name]["spec"]
            assert spec["metrics"][0]["resource"]["name"] == "cpu"
            assert 1 <= spec["minReplicas"] < spec["maxReplicas"]
        else:
            assert any(t["type"] == "cpu" for t in scaled[name]["spec"]["triggers"])
    # Bridges are competing consumers of the edge queue: rolled, scaled, each copy its own MQTT
    # client id (the pod's name) so that their status connections never take each other over.
    bridge = deployment(overlay, "mqtt_bridge")
    assert bridge["spec"]["strategy"]["type"] == "RollingUpdate"
    [client_id] = [v for v in container(bridge)["env"] if v["name"] == "MQTT_CLIENT_ID"]
    assert client_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    env = resolved_env(overlay, bridge)
    assert env.get("MQTT_EDGE_QUEUE", EdgeSettings().queue) == CONSUMERS["mqtt_bridge"]
    # The alerter is a single active consumer of its queue: a standby, never scaled out.
    alerter = deployment(overlay, "alerter")
    assert alerter["spec"]["replicas"] == 2
    assert "alerter" not in hpas and "alerter" not in scaled


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_disruption_budget_that_lets_a_node_drain(overlay: str) -> None:
    pdbs = objects(overlay, "PodDisruptionBudget")
    for doc in objects(overlay, "Deployment"):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        [pdb] = [p for p in pdbs if _matches(p["spec"]["selector"]["matchLabels"], labels)]
        if "minAvailable" in pdb["spec"]:
            assert pdb["spec"]["minAvailable"] < doc["spec"]["replicas"] or (
                doc["metadata"]["name"]
                in _autoscaled_min_above(overlay, pdb["spec"]["minAvailable"])
            ), f"{doc['metadata']['name']}: minAvailable would block every drain"
        else:
            assert pdb["spec"]["maxUnavailable"] >= 1


def _autoscaled_min_above(overlay: str, floor: int) -> set[str]:
    names = {
        d["spec"]["scaleTargetRef"]["name"]
        for d in objects(overlay, "HorizontalPodAutoscaler")
        if d["spec"]["minReplicas"] > floor
    }
    names |= {
        d["spec"]["scaleTargetRef"]["name"]
        for d in objects(overlay, "ScaledObject")
        if d["spec"]["minReplicaCount"] > floor
    }
    return names


def test_production_dependencies_are_highly_available() -> None:
    rabbit = one("production", "RabbitmqCluster", "rabbitmq")
    assert rabbit["spec"]["replicas"] == 3, "a quorum queue needs three nodes to lose one"
    assert "default_queue_type = quorum" in rabbit["spec"]["rabbitmq"]["additionalConfig"]
    image = rabbit["spec"]["image"]
    assert image.split(":")[1].split(".")[0] == "4", "the current RabbitMQ line"
    pg = one("production", "Cluster", "postgres")
    assert pg["spec"]["instances"] >= 3
    assert pg["spec"]["backup"]["barmanObjectStore"]["destinationPath"]
    assert one("production", "ScheduledBackup", "postgres-daily")["spec"]["cluster"] == {
        "name": "postgres"
    }
    assert one("production", "CronJob", "influxdb-backup")
    # Services reach PostgreSQL through CloudNativePG's read-write service.
    url = example_secrets()["millrace-secrets"]["POSTGRES_URL"]
    assert "@postgres-rw:" in url


# ------------------------------------------------------------------ network policies


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _selects(pod_selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not _matches(pod_selector.get("matchLabels", {}), labels):
        return False
    for expr in pod_selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
    return True


def _port_allowed(ports: list[dict[str, Any]] | None, port: int) -> bool:
    return ports is None or any(p.get("port") == port for p in ports)


def allowed(overlay: str, src: dict[str, str], dst: dict[str, str], port: int) -> bool:
    """Whether the NetworkPolicies let a pod labelled `src` open TCP `port` on a pod labelled
    `dst` in the same namespace (both the egress and the ingress side)."""
    policies = [p["spec"] for p in objects(overlay, "NetworkPolicy")]

    def side(kind: str, me: dict[str, str], peer: dict[str, str]) -> bool:
        mine = [p for p in policies if kind in p["policyTypes"] and _selects(p["podSelector"], me)]
        if not mine:
            return True  # not isolated in this direction
        key, peers_key = ("egress", "to") if kind == "Egress" else ("ingress", "from")
        for p in mine:
            for rule in p.get(key, []):
                peers = rule.get(peers_key)
                peer_ok = peers is None or any(
                    "podSelector" in x
                    and "namespaceSelector" not in x
                    and _selects(x["podSelector"], peer)
                    for x in peers
                )
                if peer_ok and _port_allowed(rule.get("ports"), port):
                    return True
        return False

    return side("Egress", src, dst) and side("Ingress", dst, src)


def expected_flows(service: str) -> set[str]:
    cls = settings_class(service)
    assert cls is not None
    return {TARGET_OF[sub] for sub in sub_models(cls) if sub in TARGET_OF}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", WRITTEN)
def test_network_policies_allow_exactly_the_architecture_flows(overlay: str, service: str) -> None:
    labels = deployment(overlay, service)["spec"]["template"]["metadata"]["labels"]
    expected = expected_flows(service)
    for target, (target_labels, port) in TARGETS.items():
        ok = allowed(overlay, labels, target_labels, port)
        assert ok == (target in expected), (
            f"{service} -> {target}:{port} is {'allowed' if ok else 'blocked'}; its settings "
            f"say it talks to {sorted(expected)}"
        )
    # Nothing else: not another app's port either.
    for other, port in CONTRACT_PORTS.items():
        if k8s_name(other) != "auth":
            other_labels = {"app.kubernetes.io/name": k8s_name(other)}
            assert not allowed(overlay, labels, other_labels, port), f"{service} -> {other}"


def test_network_policies_deny_by_default_and_let_dns_out() -> None:
    specs = {p["metadata"]["name"]: p["spec"] for p in objects("production", "NetworkPolicy")}
    deny = specs["default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    dns = specs["allow-dns"]["egress"][0]["ports"]
    assert {(p["protocol"], p["port"]) for p in dns} == {("UDP", 53), ("TCP", 53)}
    # An unlisted pod reaches nothing.
    stranger = {"app.kubernetes.io/name": "stranger"}
    for target_labels, port in TARGETS.values():
        assert not allowed("production", stranger, target_labels, port)


# ------------------------------------------------------------------ ingress and TLS


def _route(ingress: dict[str, Any], path: str) -> str:
    best: tuple[int, str] | None = None
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            prefix = p["path"]
            hit = (
                path == prefix
                if p["pathType"] == "Exact"
                else (path == prefix or path.startswith(prefix.rstrip("/") + "/"))
            )
            if hit and (best is None or len(prefix) > best[0]):
                best = (len(prefix), p["backend"]["service"]["name"])
    assert best is not None, f"no route for {path}"
    return best[1]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_terminates_tls_and_routes_each_door(overlay: str) -> None:
    ingress = one(overlay, "Ingress", "millrace")
    hosts = {r["host"] for r in ingress["spec"]["rules"]}
    tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
    assert hosts <= tls_hosts and all(t["secretName"] for t in ingress["spec"]["tls"])
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    expected = {
        "/api/v1/data/ingest": "ingest-gateway",
        "/api/v1/auth/login": "auth",
        "/api/v1/auth/users": "auth",
        "/api/v1/auth/gateways": "auth",
        "/.well-known/jwks.json": "auth",
        "/api/v1/machines": "query-api",
        "/api/v1/data/machine/m-1": "query-api",
        "/api/v1/data/summary": "query-api",
        "/api/v1/deadletters": "query-api",
        "/api/v1/config": "query-api",
    }
    services = {s["metadata"]["name"]: s for s in objects(overlay, "Service")}
    for path, service in expected.items():
        assert _route(ingress, path) == service, path
        assert service in services
    # The MQTT door is TLS only from outside: RabbitMQ's pods, 8883 alone.
    outside = services["mqtt-edge"]
    assert outside["spec"]["type"] == "LoadBalancer"
    assert outside["spec"]["selector"] == TARGETS["mqtt-edge"][0]
    assert [(p["port"], p["targetPort"]) for p in outside["spec"]["ports"]] == [
        (MQTT_TLS_PORT, MQTT_TLS_PORT)
    ]
    # RabbitMQ asks auth about gateways on /api/v1/mqtt/auth/*: never routed from outside.
    assert _route(ingress, "/api/v1/mqtt/auth/user") != "auth"


# ------------------------------------------------------------------ the MQTT edge (RabbitMQ)


def rabbitmq_cluster(overlay: str) -> dict[str, Any]:
    return one(overlay, "RabbitmqCluster", "rabbitmq")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rabbitmq_serves_the_mqtt_edge_over_tls(overlay: str) -> None:
    spec = rabbitmq_cluster(overlay)["spec"]
    assert EDGE_PLUGINS | {"rabbitmq_prometheus"} <= set(spec["rabbitmq"]["additionalPlugins"])
    # spec.tls: the operator mounts the secret and opens MQTT over TLS on 8883 (the MQTT plugin
    # is enabled), with ssl_options pointing at it.
    secret = spec["tls"]["secretName"]
    [cert] = [c for c in objects(overlay, "Certificate") if c["spec"]["secretName"] == secret]
    assert cert["spec"]["dnsNames"], "the name gateways connect to"
    assert not spec["tls"].get("disableNonTLSListeners"), "AMQP and MQTT stay plain inside"
    conf = rabbitmq_conf(spec["rabbitmq"]["additionalConfig"])
    # Auth by its Service name in the cluster's own namespace, on auth's port.
    auth_service = one(overlay, "Service", "auth")
    [auth_port] = [p["port"] for p in auth_service["spec"]["ports"]]
    check_edge_config(conf, f"http://{auth_service['metadata']['name']}:{auth_port}")
    assert not [k for k in conf if k.startswith(("mqtt.listeners.", "ssl_options."))], (
        "listeners and certificates are the operator's (spec.tls)"
    )
    # The same edge keys as compose's configuration.
    compose = rabbitmq_conf(EDGE_CONF.read_text())
    for key, value in conf.items():
        if key.startswith(("mqtt.", "auth_")):
            assert compose.get(key) == value, key
    check_keys_exist_in_rabbitmq(conf)


def _permitted(pattern: str, name: str) -> bool:
    # RabbitMQ matches permissions with an unanchored regular expression search.
    return re.search(pattern, name) is not None


def test_the_service_user_may_use_every_name_the_code_uses() -> None:
    """The Permission of the services' RabbitMQ user covers what they declare, bind, publish to
    and consume (names from the settings), and nothing of another application."""
    amqp, edge, alerter = AmqpSettings(), EdgeSettings(), AlerterSettings().alerter
    live = "live.query_api.host-1.7.0a1b2c3d"  # services/query_api/live/hub.py
    queues = [
        amqp.queue,
        amqp.dead_letter,
        edge.queue,
        alerter.queue,
        alerter.notify_queue,
        live,
    ]
    declared_exchanges = [amqp.exchange, amqp.dead_letter]
    perms = one("production", "Permission", "millrace")["spec"]["permissions"]
    for name in queues + declared_exchanges:
        assert _permitted(perms["configure"], name), f"configure {name}"
    for name in queues + declared_exchanges + [MQTT_EXCHANGE, "amq.default"]:
        assert _permitted(perms["write"], name), f"write {name}"
    for name in queues + declared_exchanges + [MQTT_EXCHANGE]:
        assert _permitted(perms["read"], name), f"read {name}"
    for name in ("other.app", "amq.direct", "mqtt-subscription-gw-01qos1"):
        for kind in ("configure", "write", "read"):
            assert not _permitted(perms[kind], name), f"{kind} {name}"


def test_rabbitmq_calls_auth_and_nothing_else_of_millrace() -> None:
    rabbit = TARGETS["rabbitmq"][0]
    assert allowed("production", rabbit, TARGETS["auth"][0], TARGETS["auth"][1])
    for target in ("postgres", "redis", "influxdb"):
        labels, port = TARGETS[target]
        assert not allowed("production", rabbit, labels, port), target


def test_gateways_reach_the_edge_over_tls_only() -> None:
    """From outside the namespace (no `from`): the TLS port of RabbitMQ's pods and nothing else
    of RabbitMQ; plain MQTT only from the services whose settings have MQTT."""
    policies = [p["spec"] for p in objects("production", "NetworkPolicy")]
    rabbit = TARGETS["rabbitmq"][0]
    open_ports = {
        port["port"]
        for p in policies
        if "Ingress" in p["policyTypes"] and _selects(p["podSelector"], rabbit)
        for rule in p.get("ingress", [])
        if "from" not in rule
        for port in rule.get("ports") or [{"port": "every"}]
    }
    assert open_ports == {MQTT_TLS_PORT}
    mqtt_clients = {s for s in WRITTEN if "mqtt-edge" in expected_flows(s)}
    assert mqtt_clients == {"mqtt_bridge", "alerter"}
