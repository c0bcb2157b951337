"""What the auth service counts for the operator (README "Production", monitoring): sign-ins by
grant and outcome, tokens issued, and the build every service reports on /metrics."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from starlette.testclient import TestClient

from shared.metrics import build_version

if TYPE_CHECKING:
    from tests.auth_fixtures import MakeUser

pytestmark = pytest.mark.integration

LOGIN = "/api/v1/auth/login"


def sample(client: TestClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and ",".join(sorted(m.group(1).split(","))) == wanted:
            return float(m.group(2))
    raise AssertionError(f"{name}{{{wanted}}} not on /metrics")


def test_logins_failures_and_tokens_are_counted(
    auth_client: TestClient, make_user: MakeUser
) -> None:
    account = make_user("Operator")
    ok = sample(auth_client, "millrace_auth_logins_total", grant="password", outcome="success")
    bad = sample(auth_client, "millrace_auth_logins_total", grant="password", outcome="failure")
    issued = sample(auth_client, "millrace_auth_tokens_issued_total", grant="password")
    refreshed = sample(auth_client, "millrace_auth_tokens_issued_total", grant="refresh_token")

    wrong = auth_client.post(LOGIN, json={"username": account.username, "password": "nope!"})
    assert wrong.status_code == 401
    right = auth_client.post(
        LOGIN, json={"username": account.username, "password": account.password}
    )
    assert right.status_code == 200
    rotated = auth_client.post(
        "/api/v1/auth/refresh", json={"refresh_token": right.json()["refresh_token"]}
    )
    assert rotated.status_code == 200

    labels = {"grant": "password"}
    assert sample(auth_client, "millrace_auth_logins_total", **labels, outcome="success") == ok + 1
    assert sample(auth_client, "millrace_auth_logins_total", **labels, outcome="failure") == bad + 1
    assert sample(auth_client, "millrace_auth_tokens_issued_total", **labels) == issued + 1
    assert (
        sample(auth_client, "millrace_auth_tokens_issued_total", grant="refresh_token")
        == refreshed + 1
    )


def test_throttled_logins_are_counted(auth_client: TestClient, make_user: MakeUser) -> None:
    account = make_user("Operator")
    before = sample(
        auth_client, "millrace_auth_logins_total", grant="password", outcome="throttled"
    )
    for _ in range(5):
        auth_client.post(LOGIN, json={"username": account.username, "password": "nope!"})
    refused = auth_client.post(
        LOGIN, json={"username": account.username, "password": account.password}
    )
    assert refused.status_code == 429
    after = sample(auth_client, "millrace_auth_logins_total", grant="password", outcome="throttled")
    assert after == before + 1


def test_metrics_carry_the_build(auth_client: TestClient) -> None:
    text = auth_client.get("/metrics").text
    [line] = [ln for ln in text.splitlines() if ln.startswith("millrace_build_info{")]
    assert f'version="{build_version()}"' in line
    assert line.endswith(" 1.0")
