"""Regenerate schemas.json: the upstream CRD schemas of the custom resources infra/k8s uses,
trimmed to what the manifests touch, for the offline test (tests/unit/test_k8s_manifests.py).

    python infra/k8s/crds/trim.py CRD.yaml [CRD.yaml ...] > infra/k8s/crds/schemas.json

Each CRD file comes from its operator's repository at a released version; schemas.json was made
from KEDA v2.20.1 (config/crd/bases/keda.sh_{scaledobjects,triggerauthentications}.yaml),
CloudNativePG v1.30.0 (config/crd/bases/postgresql.cnpg.io_{clusters,scheduledbackups}.yaml),
RabbitMQ Cluster Operator v2.22.3 (config/crd/bases/rabbitmq.com_rabbitmqclusters.yaml),
Messaging Topology Operator v1.20.1 (config/crd/bases/rabbitmq.com_{users,permissions}.yaml)
and cert-manager v1.19.6 (deploy/crds/crd-{certificates,clusterissuers}.yaml).
Every object keeps the full list of its property names (an unknown or
misspelt field fails, as `kubectl apply --validate=strict` would), its required fields, types and
enums; the sub-schemas of fields no manifest uses are reduced to {}.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
OVERLAYS = ["infra/k8s/base", "infra/k8s/overlays/dev", "infra/k8s/overlays/production"]
KEEP = (
    "type",
    "required",
    "enum",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "maxLength",
    "minLength",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "nullable",
)


def rendered() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in OVERLAYS:
        out = subprocess.run(
            ["kubectl", "kustomize", str(ROOT / path)], check=True, capture_output=True, text=True
        ).stdout
        docs += [d for d in yaml.safe_load_all(out) if d]
    return docs


def trim(schema: dict[str, Any], used: list[Any]) -> dict[str, Any]:
    out = {k: v for k, v in schema.items() if k in KEEP}
    props = schema.get("properties")
    if isinstance(props, dict):
        out["properties"] = {}
        for name, sub in props.items():
            values = [u[name] for u in used if isinstance(u, dict) and name in u]
            out["properties"][name] = trim(sub, values) if values else {}
        if (
            not schema.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in schema
        ):
            out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        values = [v for u in used if isinstance(u, dict) for v in u.values()]
        out["additionalProperties"] = trim(schema["additionalProperties"], values)
    if isinstance(schema.get("items"), dict):
        values = [v for u in used if isinstance(u, list) for v in u]
        out["items"] = trim(schema["items"], values)
    return out


def main() -> None:
    docs = rendered()
    schemas: dict[str, Any] = {}
    for path in sys.argv[1:]:
        crd = yaml.safe_load(Path(path).read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            api = f"{group}/{version['name']}"
            used = [d for d in docs if d["apiVersion"] == api and d["kind"] == kind]
            if used:
                schema = version["schema"]["openAPIV3Schema"]
                schemas[f"{api}/{kind}"] = trim(schema, used)
    json.dump({"schemas": schemas}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
