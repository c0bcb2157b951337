"""The web console in a real browser (Debian's chromium through Playwright), against the running
pipeline: sign in, the live board (HTTP and MQTT readings within 2 s), the history chart, and an
alert raised, acknowledged and cleared as an operator sees it."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect

from shared.settings import IngestLimits
from tests.browser_fixtures import browser, page  # noqa: F401  (fixtures)
from tests.e2e import cleanup
from tests.e2e.pipeline import create_machine, create_user, poll
from tests.e2e.test_pipeline import iso
from tests.mqtt_fixtures import mosquitto_pub, service_mqtt

pytestmark = pytest.mark.e2e
Headers = Callable[[str], dict[str, str]]


@pytest.fixture(scope="module")
def operator() -> tuple[str, str]:
    return create_user("Operator")


@dataclass
class Console:
    """The console in a browser page, the running pipeline behind it, and the operator who signs
    in."""

    page: Page
    urls: dict[str, str]
    auth_headers: Headers
    operator: tuple[str, str]

    def machine(self, location: str, name: str, factory_id: str | None = None) -> str:
        return create_machine(self.urls, self.auth_headers, location, name, factory_id)

    def send(self, mid: str, location: str, readings: list[dict[str, Any]]) -> None:
        resp = httpx.post(
            f"{self.urls['ingest_gateway']}/api/v1/data/ingest",
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
            headers=self.auth_headers("Operator"),
        )
        assert resp.status_code == 202, resp.text

    def log_in(
        self, user: tuple[str, str] | None = None, password: str = "", pg: Page | None = None
    ) -> None:
        """Fills in and sends the sign-in form as ``user`` (the operator), with ``password``
        instead of the user's if given."""
        pg = pg or self.page
        username, user_password = user or self.operator
        pg.goto(f"{self.urls['query_api']}/console")
        pg.fill("#username", username)
        pg.fill("#password", password or user_password)
        pg.click("#login-form button")

    def sign_in(
        self, find: str, user: tuple[str, str] | None = None, pg: Page | None = None
    ) -> None:
        """Signs in, waits for the live stream, and filters the board by ``find``."""
        pg = pg or self.page
        self.log_in(user, pg=pg)
        expect(pg.locator("#who")).to_contain_text((user or self.operator)[0])
        expect(pg.locator("#live-state")).to_have_attribute("data-up", "1", timeout=10_000)
        pg.fill("#f-text", find)  # the board filters as one types: no Enter needed
        expect(pg.locator("#board-count")).to_have_attribute("data-find", find)

    def tile(self, mid: str) -> Locator:
        return self.page.locator(f'.tile[data-machine="{mid}"]')

    def new_location(self) -> str:
        return f"Console hall {uuid.uuid4().hex[:6]}"


@pytest.fixture
def console(
    page: Page,  # noqa: F811
    urls: dict[str, str],
    auth_headers: Headers,
    operator: tuple[str, str],
) -> Console:
    return Console(page, urls, auth_headers, operator)


def test_sign_in_refuses_a_wrong_password(console: Console) -> None:
    console.log_in(password="not-the-password")
    expect(console.page.locator("#login-error")).to_contain_text("Invalid")
    expect(console.page.locator("#nav")).to_be_hidden()


def test_http_and_mqtt_readings_appear_on_the_board_within_2_s(console: Console) -> None:
    location = console.new_location()
    mid = console.machine(location, "Board press")
    console.sign_in(location)
    tile = console.tile(mid)
    expect(tile).to_contain_text("NEVER SEEN")

    sent = time.monotonic()
    console.send(mid, location, [{"timestamp": iso(datetime.now(UTC)), "temperature": 61.5}])
    expect(tile.locator('[data-field="temperature"]')).to_have_text("61.5 °C", timeout=2_000)
    assert time.monotonic() - sent < 2
    expect(tile).to_contain_text("ONLINE")

    payload = orjson.dumps(
        {"timestamp": iso(datetime.now(UTC)), "sensor_type": "Temperature", "speed": 1234}
    )
    sent = time.monotonic()
    # The machine was registered without a factory: it belongs to the default one.
    topic = f"factory/{IngestLimits().default_factory_id}/machine/{mid}/telemetry"
    mosquitto_pub(service_mqtt(), topic, [payload])
    expect(tile.locator('[data-field="speed"]')).to_have_text("1234 RPM", timeout=2_000)
    assert time.monotonic() - sent < 2


def test_history_chart_draws_the_stored_points(console: Console) -> None:
    pg, urls = console.page, console.urls
    location = console.new_location()
    mid = console.machine(location, "Chart lathe")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=20)
    rows = [
        {"timestamp": iso(start + timedelta(seconds=30 * i)), "temperature": 60 + i % 5}
        for i in range(25)
    ]
    console.send(mid, location, rows)
    poll(
        lambda: httpx.get(
            f"{urls['query_api']}/api/v1/data/machine/{mid}",
            params={"start_time": iso(start - timedelta(seconds=1))},
            headers=console.auth_headers("Operator"),
        ).json(),
        lambda body: body.get("pagination", {}).get("total_records") == 25,
    )
    console.sign_in(location)
    tile = console.tile(mid)
    # The tile's trend of the last hour: minute means (13 windows), from a mean of 60.5 °C to 64 °C.
    expect(tile.locator(".trend")).to_have_attribute("data-trend-points", "13")
    expect(tile.locator(".trend")).to_contain_text("1 h ↑ rising +3.5 °C")
    expect(tile.locator(".trend")).to_have_attribute(
        "title", re.compile(r"^temperature, last hour")
    )
    tile.click()
    expect(pg.locator("#chart canvas").first).to_be_visible()
    expect(pg.locator("#chart")).to_have_attribute("data-points", "25")
    expect(pg.locator("#tier")).to_have_attribute("data-tier", "raw")
    expect(pg.locator("#chart")).to_have_attribute("data-bands", "0")
    expect(pg.locator("#m-last")).to_contain_text("64.0")
    # 24 h: minute windows of the same points (two a minute, over 12 minutes: 13 windows), with
    # each window's minimum and maximum as a band round the mean.
    pg.click('[data-preset="24h"]')
    expect(pg.locator("#tier")).to_contain_text("interval 1m")
    expect(pg.locator("#chart")).to_have_attribute("data-points", "13")
    expect(pg.locator("#chart")).to_have_attribute("data-bands", "1")
    expect(pg.locator("#tier")).to_contain_text("band: min")
    # The legend lists the band of the shown field only (pressure and speed start hidden).
    legend = pg.locator("#chart .u-legend .u-series")
    expect(legend.filter(has_text="temperature max")).to_be_visible()
    expect(legend.filter(has_text="temperature min")).to_be_visible()
    expect(legend.filter(has_text="pressure max")).to_be_hidden()


class Alerting:
    """A machine with a rule of its own, fed readings one second apart from a minute ago."""

    def __init__(self, console: Console, name: str, rule: dict[str, Any]) -> None:
        self.console = console
        self.location = console.new_location()
        self.mid = console.machine(self.location, name)
        resp = cleanup.created(
            httpx.post(
                f"{console.urls['query_api']}/api/v1/alerts/rules",
                json={**rule, "comparison": ">", "scope_type": "machine", "scope_value": self.mid},
                headers=console.auth_headers("Supervisor"),
            )
        )
        assert resp.status_code == 201, resp.text
        self.rule_id = resp.json()["rule"]["id"]
        self.t0 = datetime.now(UTC) - timedelta(seconds=60)
        self.k = 0

    def send(self, **fields: float) -> None:
        self.k += 1
        reading = {"timestamp": iso(self.t0 + timedelta(seconds=self.k)), **fields}
        self.console.send(self.mid, self.location, [reading])

    def alerts(self) -> list[dict[str, Any]]:
        return list(
            httpx.get(
                f"{self.console.urls['query_api']}/api/v1/alerts",
                params={"machine_id": self.mid, "rule_id": self.rule_id},
                headers=self.console.auth_headers("Operator"),
            ).json()["alerts"]
        )

    def raise_alert(self, **fields: float) -> None:
        """Sends ``fields`` until the alert is open: the alerter picks a new rule up within its
        refresh period."""

        def again() -> list[dict[str, Any]]:
            self.send(**fields)
            return self.alerts()

        poll(again, lambda alerts: len(alerts) == 1, timeout=15)


def test_alert_shows_live_is_acknowledged_by_the_user_and_clears(console: Console) -> None:
    pg, operator = console.page, console.operator
    # Below any sensible max_temperature_threshold (a default rule for every machine).
    rule = {"name": "Oven too hot", "field": "temperature", "threshold": 40.0}
    oven = Alerting(console, "Alert oven", rule | {"clear_threshold": 35.0, "severity": "critical"})
    console.sign_in(oven.location)
    tile = console.tile(oven.mid)
    expect(tile).to_be_visible()
    oven.raise_alert(temperature=45.0)
    # Shown live (no reload): the tile turns critical, with the word.
    expect(tile).to_have_class("tile sev-critical", timeout=2_000)
    expect(tile.locator(".badge.critical")).to_have_text("critical")
    expect(pg.locator("#alert-count")).not_to_have_text("")

    # Acknowledging asks for a note first; the tile then says who acknowledged, and the note.
    tile.get_by_role("button", name="Acknowledge").click()
    note = tile.get_by_label("Acknowledgement note")
    expect(note).to_be_focused()
    note.fill("Door left open, closed it")
    tile.get_by_role("button", name="Confirm").click()
    expect(tile.locator(".badge.acknowledged")).to_be_visible(timeout=2_000)
    expect(tile.locator(".acked")).to_contain_text(f"acknowledged by {operator[0]}")
    expect(tile.locator(".acked")).to_contain_text("Door left open, closed it")
    [alert] = oven.alerts()
    assert alert["state"] == "acknowledged"
    assert alert["acknowledged_by"] == operator[0]
    assert alert["ack_note"] == "Door left open, closed it"

    oven.send(temperature=30.0)
    expect(tile).to_have_class("tile", timeout=2_000)
    expect(tile.locator(".badge")).to_have_count(0)
    pg.goto(f"{console.urls['query_api']}/console/#/alerts")
    row = pg.locator(f'#alert-history tr[data-alert="{alert["id"]}"]')
    expect(row).to_contain_text("acknowledged")
    expect(row).to_contain_text(f"by {operator[0]}; cleared")
    expect(row).to_contain_text("by alerter")
    expect(row).to_contain_text("Door left open, closed it")


def test_management_pages_only_for_management(console: Console) -> None:
    # The settings page lists the configuration, its audited changes and the rule the
    # temperature setting makes. A fresh stack has none of them: the setting is set here when
    # unset (a harmless 1000 °C; a set one was audited when set), and its rule waited for.
    api, management = console.urls["query_api"], console.auth_headers("Management")
    setting = "max_temperature_threshold"
    now = httpx.get(f"{api}/api/v1/config", params={"name": setting}, headers=management)
    if now.status_code == 404:
        resp = httpx.post(
            f"{api}/api/v1/config/update",
            json={"setting_name": setting, "setting_value": 1000.0},
            headers=management,
        )
        assert resp.status_code == 200, resp.text
    poll(
        lambda: httpx.get(f"{api}/api/v1/alerts/rules", headers=management).text,
        lambda rules: setting in rules,
        timeout=15,
    )
    pg = console.page
    console.sign_in("")
    expect(pg.locator('#nav a[data-nav="deadletters"]')).to_be_hidden()
    pg.get_by_role("button", name="Sign out").click()
    expect(pg.locator("#login-form")).to_be_visible()
    console.sign_in("", user=create_user("Management"))
    pg.click('#nav a[data-nav="deadletters"]')
    expect(pg.locator("#dl-stats")).to_contain_text("in all")
    pg.click('#nav a[data-nav="settings"]')
    expect(pg.locator("#config table")).to_be_visible()
    expect(pg.locator("#config-audit table")).to_contain_text("config.update")
    expect(pg.locator("#rules table")).to_contain_text("max_temperature_threshold")


def test_acknowledge_can_be_cancelled_and_the_note_survives_live_updates(
    console: Console,
) -> None:
    rule = {"name": "Kiln pressure", "field": "pressure", "threshold": 500.0}
    kiln = Alerting(console, "Ack kiln", rule | {"clear_threshold": 400.0, "severity": "major"})
    kiln.raise_alert(pressure=600.0)
    console.sign_in(kiln.location)
    tile = console.tile(kiln.mid)
    expect(tile).to_have_class("tile sev-major")
    tile.get_by_role("button", name="Acknowledge").click()
    tile.get_by_role("button", name="Cancel").click()
    expect(tile.get_by_label("Acknowledgement note")).to_have_count(0)
    expect(tile.get_by_role("button", name="Acknowledge")).to_be_visible()
    assert console.page.url.endswith("#/board")  # the click stayed on the board

    # A note half written while readings keep redrawing the tile is kept.
    tile.get_by_role("button", name="Acknowledge").click()
    tile.get_by_label("Acknowledgement note").fill("Checking the valve")
    value = tile.locator('[data-field="pressure"]')
    for p in (601.0, 602.0):
        kiln.send(pressure=p)
        expect(value).to_have_text(f"{p:.0f} kPa", timeout=2_000)
    expect(tile.get_by_label("Acknowledgement note")).to_have_value("Checking the valve")
    tile.get_by_label("Acknowledgement note").press("Enter")
    expect(tile.locator(".acked")).to_contain_text("Checking the valve", timeout=2_000)


def test_board_filters_by_factory_and_omits_the_filter_without_factories(
    console: Console,
) -> None:
    pg = console.page
    tag = uuid.uuid4().hex[:6]
    location = f"Console hall {tag}"
    north = console.machine(location, "North press", f"north-{tag}")
    south = console.machine(location, "South press", f"south-{tag}")
    console.sign_in(location)
    expect(pg.locator(".tile")).to_have_count(2)
    factory = pg.locator("#f-factory")
    expect(factory).to_be_visible()
    factory.select_option(f"north-{tag}")
    expect(pg.locator(".tile")).to_have_count(1)
    expect(console.tile(north)).to_contain_text(f"north-{tag}")
    expect(console.tile(south)).to_have_count(0)
    factory.select_option("")
    expect(pg.locator(".tile")).to_have_count(2)

    # Machines without factories (an older query API): no factory filter at all.
    def without_factories(route: Route) -> None:
        body = route.fetch().json()
        for row in body["machines"]:
            row.pop("factory_id", None)
        route.fulfill(json=body)

    # (Live readings name their factory too: the stream is left out here.)
    pg.route("**/api/v1/machines/status", without_factories)
    pg.route("**/api/v1/live", lambda route: route.abort())
    pg.reload()
    expect(pg.locator(".tile").first).to_be_visible()
    expect(pg.locator("#f-factory")).to_be_hidden()


def test_connection_lost_and_restored_banner(console: Console) -> None:
    pg = console.page
    # The first stream says hello and then ends, as when a proxy or the network drops it; the
    # retries fail until the route is lifted.
    calls = 0

    def drop_after_hello(route: Route) -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            route.abort()
            return
        hello = {"epoch": "test", "heartbeat_s": 15, "expires": time.time() + 600}
        route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream"},
            body=f"event: hello\ndata: {orjson.dumps(hello).decode()}\n\n",
        )

    pg.route("**/api/v1/live", drop_after_hello)
    console.log_in()
    banner = pg.locator("#banner")
    expect(banner).to_have_class("lost", timeout=5_000)
    expect(banner).to_contain_text("Live connection lost")
    expect(banner).to_contain_text("Reconnecting")
    expect(pg.locator("#live-state")).to_have_text("○ reconnecting…")
    expect(pg.locator("#live-state")).to_have_attribute("data-up", "0")
    expect(pg.locator(".tile").first).to_be_visible()  # the board stays, marked out of date
    pg.unroute("**/api/v1/live")
    expect(pg.locator("#live-state")).to_have_attribute("data-up", "1", timeout=15_000)
    expect(banner).to_have_class("back")
    expect(banner).to_contain_text("Live connection restored")
    expect(banner).to_be_hidden(timeout=10_000)


def test_live_endpoint_unreachable_from_the_start(console: Console) -> None:
    pg = console.page
    pg.route("**/api/v1/live", lambda route: route.abort())
    console.log_in()
    expect(pg.locator("#banner")).to_have_class("lost", timeout=5_000)
    expect(pg.locator("#banner")).to_contain_text("No live connection")
    expect(pg.locator(".tile").first).to_be_visible()  # the board still shows, from the API
    pg.unroute("**/api/v1/live")
    expect(pg.locator("#live-state")).to_have_attribute("data-up", "1", timeout=15_000)
    expect(pg.locator("#banner")).to_have_class("back")
    expect(pg.locator("#banner")).to_contain_text("Live connection established")


@pytest.mark.parametrize("size", [(1366, 768), (820, 1180), (768, 1024)])
def test_board_fits_control_room_and_tablet_screens(
    browser: Browser,  # noqa: F811
    console: Console,
    size: tuple[int, int],
) -> None:
    location = console.new_location()
    mid = console.machine(location, "Width mill")
    console.send(mid, location, [{"timestamp": iso(datetime.now(UTC)), "temperature": 50.0}])
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    try:
        pg = context.new_page()
        console.sign_in(location, pg=pg)
        expect(
            pg.locator(f'.tile[data-machine="{mid}"] [data-field="temperature"]')
        ).to_be_visible()
        # Nothing wider than the screen: no sideways scrolling of the page, and the controls
        # and the tile inside it (measured at once: live updates redraw the tiles).
        assert pg.evaluate("document.documentElement.scrollWidth") <= size[0]
        boxes = pg.evaluate(
            """(sels) => sels.map((s) => {
                const r = document.querySelector(s).getBoundingClientRect();
                return [s, r.left, r.right, r.width];
            })""",
            ["#nav", "#logout", "#f-text", "#f-location", f'.tile[data-machine="{mid}"]'],
        )
        for selector, left, right, width in boxes:
            assert width > 0 and left >= 0 and right <= size[0], (selector, left, right)
        pg.locator(f'.tile[data-machine="{mid}"]').click()
        expect(pg.locator("#chart canvas").first).to_be_visible()
        assert pg.evaluate("document.documentElement.scrollWidth") <= size[0]
    finally:
        context.close()
