"""Starts a private, empty Millrace beside the running pipeline (``tools/screenshots/plant.py``),
seeds a small plant through its APIs (two factories, a day of readings, rules, an alert
raised and one acknowledged with a note), opens the console in Debian's chromium and writes
docs/images/console-*.png; then removes the private stack and everything it stored.

Needs the pipeline's servers running (``make up``): PostgreSQL, RabbitMQ, InfluxDB, Redis.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from tools.common.auth import access_token, dev_password, login
from tools.common.browser import CHROMIUM_ARGS
from tools.screenshots.plant import PrivatePlant, private_plant

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "images"
NORTH, SOUTH = "north-works", "south-works"
PLANT = [  # name, location, factory
    ("Press 1", "Press shop", NORTH),
    ("Press 2", "Press shop", NORTH),
    ("Lathe 7", "Machining hall", NORTH),
    ("Mill 3", "Machining hall", NORTH),
    ("Oven A", "Paint line", SOUTH),
    ("Oven B", "Paint line", SOUTH),
]
HOURS = 24
STEP_S = 20
EVERY_TREND = "[...document.querySelectorAll('.tile')].every((t) => t.querySelector('.trend svg'))"


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: {what} did not happen within {timeout_s:.0f} s")
        time.sleep(0.5)  # the pipeline has no notification for these


class Seeder:
    def __init__(self, plant: PrivatePlant, client: httpx.Client) -> None:
        self.plant, self.client = plant, client
        self.query, self.ingest = plant.url("query_api"), plant.url("ingest_gateway")
        self.plant_ids: list[str] = []  # registered machines, for the clean-up

    def headers(self, user: str) -> dict[str, str]:
        password = dev_password(user, self.plant.dev_users)
        if password is None:
            raise SystemExit(f"the private stack has no development user {user}")
        resp = login(self.plant.url("auth"), user, password, timeout=10)
        resp.raise_for_status()
        return {"Authorization": f"Bearer {access_token(resp)}"}

    def machines(self, sup: dict[str, str]) -> dict[str, dict[str, Any]]:
        out = {}
        for name, location, factory in PLANT:
            resp = self.client.post(
                f"{self.query}/api/v1/machines",
                json={
                    "name": name,
                    "location": location,
                    "sensor_type": "Temperature",
                    "factory_id": factory,
                },
                headers=sup,
            )
            resp.raise_for_status()
            out[name] = resp.json()["machine"]
        return out

    def send(self, op: dict[str, str], m: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        for i in range(0, len(rows), 500):
            resp = self.client.post(
                f"{self.ingest}/api/v1/data/ingest",
                json={
                    "gateway_id": "GW-PAINT" if m["factory_id"] == SOUTH else "GW-PRESS",
                    "factory_id": m["factory_id"],
                    "batch": [{"machine_id": m["id"], "readings": rows[i : i + 500]}],
                },
                headers=op,
            )
            resp.raise_for_status()

    def alerts(self, op: dict[str, str], state: str = "open") -> list[dict[str, Any]]:
        resp = self.client.get(f"{self.query}/api/v1/alerts", params={"state": state}, headers=op)
        resp.raise_for_status()
        return list(resp.json()["alerts"])

    def seed(self) -> dict[str, dict[str, Any]]:
        sup, mgmt, op = (self.headers(u) for u in ("supervisor", "manager", "operator"))
        machines = self.machines(sup)
        self.plant_ids += [m["id"] for m in machines.values()]
        self.client.post(
            f"{self.query}/api/v1/config/update",
            json={"setting_name": "max_temperature_threshold", "setting_value": 85},
            headers=mgmt,
        ).raise_for_status()
        rule = self.client.post(
            f"{self.query}/api/v1/alerts/rules",
            json={
                "name": "Press hydraulics high",
                "field": "pressure",
                "comparison": ">",
                "threshold": 104.0,
                "clear_threshold": 102.0,
                "severity": "warning",
                "scope_type": "location",
                "scope_value": "Press shop",
            },
            headers=sup,
        )
        rule.raise_for_status()

        def rules_loaded() -> bool:
            rules = self.client.get(f"{self.query}/api/v1/alerts/rules", headers=op).json()
            return any(r["managed_by"] and r["threshold"] == 85 for r in rules["rules"])

        wait_for("the temperature rule at 85 °C", rules_loaded)
        time.sleep(3)  # the rows are there; the alerter loads rules on its next refresh
        self.history(op, machines)
        oven, press = machines["Oven A"]["id"], machines["Press 2"]["id"]
        wait_for(
            "alerts on Oven A and Press 2",
            lambda: {oven, press} <= {a["machine_id"] for a in self.alerts(op)},
        )
        oven_b = machines["Oven B"]["id"]
        wait_for(
            "Oven B's earlier alert, cleared",
            lambda: any(a["machine_id"] == oven_b for a in self.alerts(op, "cleared")),
        )
        [acked] = [a for a in self.alerts(op) if a["machine_id"] == press]
        self.client.post(
            f"{self.query}/api/v1/alerts/{acked['id']}/acknowledge",
            json={"note": "Seal replaced, watching the pressure"},
            headers=self.headers("supervisor"),
        ).raise_for_status()
        return machines

    def history(self, op: dict[str, str], machines: dict[str, dict[str, Any]]) -> None:
        """A day every twenty seconds; Oven A overheats in the last twenty minutes, Oven B did
        for ten minutes three hours ago, Press 2's pressure creeps up, Mill 3 went silent forty
        minutes ago."""
        now = datetime.fromtimestamp(time.time() // STEP_S * STEP_S, UTC)
        rnd = random.Random(7)
        n = HOURS * 3600 // STEP_S
        for k, (name, _, _) in enumerate(PLANT):
            base = 58 + 3 * k
            rows = []
            for i in range(n):
                ago = (n - i) * STEP_S
                if name == "Mill 3" and ago < 40 * 60:
                    continue
                temp = base + 2.5 * math.sin(i / 180 + k) + rnd.uniform(-0.8, 0.8)
                pressure = 101 + rnd.uniform(-0.6, 0.6)
                if name == "Oven A" and ago < 20 * 60:
                    temp = 86 + (20 * 60 - ago) / 120 + rnd.uniform(-0.5, 0.5)
                if name == "Oven B" and 170 * 60 < ago < 180 * 60:
                    temp = 88 + rnd.uniform(-0.5, 0.5)  # an episode three hours ago, cleared
                if name == "Press 2" and ago < 15 * 60:
                    pressure = 104.5 + rnd.uniform(0, 0.8)
                rows.append(
                    {
                        "timestamp": iso(now - timedelta(seconds=ago)),
                        "temperature": round(temp, 2),
                        "pressure": round(pressure, 2),
                        "speed": 1400 + rnd.randint(-20, 20),
                    }
                )
            self.send(op, machines[name], rows)


def sign_in(page: Page, base: str, user: str, password: str) -> None:
    page.goto(f"{base}/console/")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-form button")
    page.wait_for_selector(".tile")
    page.wait_for_selector("#live-state[data-up='1']")
    page.wait_for_function(EVERY_TREND)


def shoot(plant: PrivatePlant, machines: dict[str, dict[str, Any]], chromium: str) -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    base = plant.url("query_api")
    user, password = "manager", dev_password("manager", plant.dev_users) or ""
    written = []

    def snap(page: Page, name: str, full: bool = False) -> None:
        path = OUT / name
        page.screenshot(path=str(path), full_page=full)
        written.append(path)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        tablet = browser.new_page(viewport={"width": 820, "height": 1180})
        sign_in(tablet, base, user, password)
        tablet.wait_for_selector(".tile.sev-major, .tile.sev-critical")
        snap(tablet, "console-board-tablet.png")
        tablet.close()

        page = browser.new_page(viewport={"width": 1366, "height": 768})
        sign_in(page, base, user, password)
        page.wait_for_selector(".tile.sev-major, .tile.sev-critical")
        # An operator about to acknowledge: the note is asked for first.
        oven = page.locator(f'.tile[data-machine="{machines["Oven A"]["id"]}"]')
        oven.get_by_role("button", name="Acknowledge").click()
        oven.get_by_label("Acknowledgement note").fill("Fan restarted")
        snap(page, "console-board.png")
        oven.get_by_role("button", name="Cancel").click()

        page.goto(f"{base}/console/#/machine/{machines['Oven A']['id']}")
        page.wait_for_selector("#chart canvas")
        page.wait_for_selector("#m-alerts table")
        page.click('[data-preset="24h"]')
        page.wait_for_selector("#chart[data-bands='3']")
        snap(page, "console-machine.png", full=True)

        page.goto(f"{base}/console/#/alerts")
        page.wait_for_selector("#alert-history table")
        snap(page, "console-alerts.png", full=True)

        page.goto(f"{base}/console/#/settings")
        page.wait_for_selector("#audit table")
        snap(page, "console-settings.png", full=True)

        # The live endpoint unreachable (as behind a broken proxy): the banner says so.
        page.route("**/api/v1/live", lambda route: route.abort())
        page.goto(f"{base}/console/#/board")
        page.reload()
        page.wait_for_selector("#banner.lost")
        page.wait_for_function(EVERY_TREND)
        snap(page, "console-connection-lost.png")
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument(
        "--base-port", type=int, default=18600, help="first of the private stack's 5 ports"
    )
    args = parser.parse_args()
    with private_plant(args.base_port) as (plant, machine_ids), httpx.Client(timeout=30) as c:
        seeder = Seeder(plant, c)
        try:
            machines = seeder.seed()
        finally:
            machine_ids.extend(seeder.plant_ids)
        paths = shoot(plant, machines, args.chromium)
    for path in paths:
        print(path.relative_to(ROOT))
