"""The web console in a real browser (Debian's chromium through Playwright), against the running
pipeline: sign in, the live board (HTTP and MQTT readings within 2 s), the history chart, and an
alert raised, acknowledged and cleared as an operator sees it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Page, expect

from shared.settings import MqttSettings
from tests.browser_fixtures import browser, page  # noqa: F401  (fixtures)
from tests.e2e.pipeline import create_user, poll
from tests.e2e.test_pipeline import iso
from tests.mqtt_fixtures import mosquitto_pub

pytestmark = pytest.mark.e2e
Headers = Callable[[str], dict[str, str]]


@pytest.fixture(scope="module")
def operator() -> tuple[str, str]:
    return create_user("Operator")


def machine(urls: dict[str, str], auth_headers: Headers, location: str, name: str) -> str:
    resp = httpx.post(
        f"{urls['query_api']}/api/v1/machines",
        json={"name": name, "location": location, "sensor_type": "Temperature"},
        headers=auth_headers("Supervisor"),
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["machine"]["id"])


def send(
    urls: dict[str, str],
    auth_headers: Headers,
    mid: str,
    location: str,
    readings: list[dict[str, Any]],
) -> None:
    resp = httpx.post(
        f"{urls['ingest_gateway']}/api/v1/data/ingest",
        json={
            "gateway_id": "GW-CONSOLE",
            "timestamp": readings[0]["timestamp"],
            "batch": [
                {
                    "machine_id": mid,
                    "sensor_type": "Temperature",
                    "location": location,
                    "readings": readings,
                }
            ],
        },
        headers=auth_headers("Operator"),
    )
    assert resp.status_code == 202, resp.text


def sign_in(pg: Page, urls: dict[str, str], user: tuple[str, str], find: str) -> None:
    pg.goto(f"{urls['query_api']}/console")
    pg.fill("#username", user[0])
    pg.fill("#password", user[1])
    pg.click("#login-form button")
    expect(pg.locator("#who")).to_contain_text(user[0])
    expect(pg.locator("#live-state")).to_have_attribute("data-up", "1", timeout=10_000)
    pg.fill("#f-text", find)
    pg.press("#f-text", "Enter")


def test_sign_in_refuses_a_wrong_password(
    page: Page,  # noqa: F811
    urls: dict[str, str],
    operator: tuple[str, str],
) -> None:
    page.goto(f"{urls['query_api']}/console")
    page.fill("#username", operator[0])
    page.fill("#password", "not-the-password")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("Invalid")
    expect(page.locator("#nav")).to_be_hidden()


def test_http_and_mqtt_readings_appear_on_the_board_within_2_s(
    page: Page,  # noqa: F811
    urls: dict[str, str],
    auth_headers: Headers,
    operator: tuple[str, str],
) -> None:
    location = f"Console hall {uuid.uuid4().hex[:6]}"
    mid = machine(urls, auth_headers, location, "Board press")
    sign_in(page, urls, operator, location)
    tile = page.locator(f'.tile[data-machine="{mid}"]')
    expect(tile).to_contain_text("NEVER SEEN")

    sent = time.monotonic()
    send(
        urls,
        auth_headers,
        mid,
        location,
        [{"timestamp": iso(datetime.now(UTC)), "temperature": 61.5}],
    )
    expect(tile.locator('[data-field="temperature"]')).to_have_text("61.5 °C", timeout=2_000)
    assert time.monotonic() - sent < 2
    expect(tile).to_contain_text("ONLINE")

    payload = orjson.dumps(
        {"timestamp": iso(datetime.now(UTC)), "sensor_type": "Temperature", "speed": 1234}
    )
    sent = time.monotonic()
    mosquitto_pub(MqttSettings(), f"factory/console/machine/{mid}/telemetry", [payload])
    expect(tile.locator('[data-field="speed"]')).to_have_text("1234 RPM", timeout=2_000)
    assert time.monotonic() - sent < 2


def test_history_chart_draws_the_stored_points(
    page: Page,  # noqa: F811
    urls: dict[str, str],
    auth_headers: Headers,
    operator: tuple[str, str],
) -> None:
    location = f"Console hall {uuid.uuid4().hex[:6]}"
    mid = machine(urls, auth_headers, location, "Chart lathe")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=20)
    rows = [
        {"timestamp": iso(start + timedelta(seconds=30 * i)), "temperature": 60 + i % 5}
        for i in range(25)
    ]
    send(urls, auth_headers, mid, location, rows)
    poll(
        lambda: httpx.get(
            f"{urls['query_api']}/api/v1/data/machine/{mid}",
            params={"start_time": iso(start - timedelta(seconds=1))},
            headers=auth_headers("Operator"),
        ).json(),
        lambda body: body.get("pagination", {}).get("total_records") == 25,
    )
    sign_in(page, urls, operator, location)
    page.locator(f'.tile[data-machine="{mid}"]').click()
    expect(page.locator("#chart canvas").first).to_be_visible()
    expect(page.locator("#chart")).to_have_attribute("data-points", "25")
    expect(page.locator("#tier")).to_have_attribute("data-tier", "raw")
    expect(page.locator("#m-last")).to_contain_text("64.0")
    # 24 h: minute windows of the same points (two a minute, over 12 minutes: 13 windows).
    page.click('[data-preset="24h"]')
    expect(page.locator("#tier")).to_contain_text("interval 1m")
    expect(page.locator("#chart")).to_have_attribute("data-points", "13")


def test_alert_shows_live_is_acknowledged_by_the_user_and_clears(
    page: Page,  # noqa: F811
    urls: dict[str, str],
    auth_headers: Headers,
    operator: tuple[str, str],
) -> None:
    location = f"Console hall {uuid.uuid4().hex[:6]}"
    mid = machine(urls, auth_headers, location, "Alert oven")
    rule = httpx.post(
        f"{urls['query_api']}/api/v1/alerts/rules",
        json={
            "name": "Oven too hot",
            "field": "temperature",
            "comparison": ">",
            # Below any sensible max_temperature_threshold (a default rule for every machine).
            "threshold": 40.0,
            "clear_threshold": 35.0,
            "severity": "critical",
            "scope_type": "machine",
            "scope_value": mid,
        },
        headers=auth_headers("Supervisor"),
    )
    assert rule.status_code == 201, rule.text
    sign_in(page, urls, operator, location)
    tile = page.locator(f'.tile[data-machine="{mid}"]')
    expect(tile).to_be_visible()
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    k = 0

    def hot() -> list[dict[str, Any]]:
        # The alerter picks a new rule up within its refresh period: keep the value high.
        nonlocal k
        k += 1
        send(
            urls,
            auth_headers,
            mid,
            location,
            [{"timestamp": iso(t0 + timedelta(seconds=k)), "temperature": 45.0}],
        )
        return list(
            httpx.get(
                f"{urls['query_api']}/api/v1/alerts",
                params={"machine_id": mid, "rule_id": rule.json()["rule"]["id"]},
                headers=auth_headers("Operator"),
            ).json()["alerts"]
        )

    poll(hot, lambda alerts: len(alerts) == 1, timeout=15)
    # Shown live (no reload): the tile turns critical, with the word.
    expect(tile).to_have_class("tile sev-critical", timeout=2_000)
    expect(tile.locator(".badge.critical")).to_have_text("critical")
    expect(page.locator("#alert-count")).not_to_have_text("")

    tile.get_by_role("button", name="Acknowledge").click()
    expect(tile.locator(".badge.acknowledged")).to_be_visible(timeout=2_000)
    [alert] = httpx.get(
        f"{urls['query_api']}/api/v1/alerts",
        params={"machine_id": mid, "rule_id": rule.json()["rule"]["id"]},
        headers=auth_headers("Operator"),
    ).json()["alerts"]
    assert alert["state"] == "acknowledged"
    assert alert["acknowledged_by"] == operator[0]

    send(
        urls,
        auth_headers,
        mid,
        location,
        [{"timestamp": iso(t0 + timedelta(seconds=k + 1)), "temperature": 30.0}],
    )
    expect(tile).to_have_class("tile", timeout=2_000)
    expect(tile.locator(".badge")).to_have_count(0)
    page.goto(f"{urls['query_api']}/console/#/alerts")
    row = page.locator(f'#alert-history tr[data-alert="{alert["id"]}"]')
    expect(row).to_contain_text("acknowledged")
    expect(row).to_contain_text(f"by {operator[0]}; cleared")
    expect(row).to_contain_text("by alerter")


def test_management_pages_only_for_management(
    page: Page,  # noqa: F811
    urls: dict[str, str],
    operator: tuple[str, str],
) -> None:
    sign_in(page, urls, operator, "")
    expect(page.locator('#nav a[data-nav="deadletters"]')).to_be_hidden()
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#login-form")).to_be_visible()
    sign_in(page, urls, create_user("Management"), "")
    page.click('#nav a[data-nav="deadletters"]')
    expect(page.locator("#dl-stats")).to_contain_text("in all")
    page.click('#nav a[data-nav="settings"]')
    expect(page.locator("#config table")).to_be_visible()
    expect(page.locator("#audit table")).to_contain_text("config.update")
    expect(page.locator("#rules table")).to_contain_text("max_temperature_threshold")
