"""Prometheus metrics that belong to no single module: the build every process runs, and the
auth service's sign-ins and tokens (what an operator watches for brute force and outages).

``millrace_build_info`` is registered on import; shared.http imports this module, so every
service's ``/metrics`` carries it.
"""

from __future__ import annotations

import os
import platform
import tomllib
from importlib import metadata
from pathlib import Path

from prometheus_client import Counter, Gauge

GRANTS = ("password", "refresh_token", "client_credentials")
OUTCOMES = ("success", "failure", "throttled")


def build_version() -> str:
    """MILLRACE_VERSION (set in the image), else the installed distribution's version, else
    pyproject.toml of a source checkout."""
    if version := os.environ.get("MILLRACE_VERSION"):
        return version
    try:
        return metadata.version("millrace")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        if pyproject.exists():
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    return "unknown"


BUILD_INFO = Gauge(
    "millrace_build_info",
    "Always 1; the labels say which build this process runs",
    ["version", "revision", "python"],
    multiprocess_mode="max",
)
BUILD_INFO.labels(
    build_version(), os.environ.get("MILLRACE_REVISION", "unknown"), platform.python_version()
).set(1)

AUTH_SIGN_INS = Counter(
    "millrace_auth_logins_total",
    "Sign-in attempts (password login, refresh, gateway client credentials) by outcome",
    ["grant", "outcome"],
)
AUTH_TOKENS = Counter(
    "millrace_auth_tokens_issued_total",
    "Access tokens issued, by grant (a password login or a refresh also issues a refresh token)",
    ["grant"],
)
for _grant in GRANTS:
    AUTH_TOKENS.labels(_grant)
    for _outcome in OUTCOMES:
        AUTH_SIGN_INS.labels(_grant, _outcome)
