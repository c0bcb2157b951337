"""Seeds a small plant through the real APIs (machines, an hour of readings, a rule, alerts),
then opens the console in Debian's chromium and writes docs/images/console-*.png.

Needs the running pipeline (``make up``) and its development users (``.run/dev-users.txt``).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from tools.common.auth import access_token, dev_password, login

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "images"
QUERY = os.environ.get("QUERY_API_URL", "http://127.0.0.1:8002")
INGEST = os.environ.get("INGEST_GATEWAY_URL", "http://127.0.0.1:8001")
AUTH = os.environ.get("AUTH_URL", "http://127.0.0.1:8003")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SITE = "Plant North"
PLANT = [
    ("Press 1", f"{SITE} · Press shop"),
    ("Press 2", f"{SITE} · Press shop"),
    ("Lathe 7", f"{SITE} · Machining hall"),
    ("Mill 3", f"{SITE} · Machining hall"),
    ("Oven A", f"{SITE} · Paint line"),
    ("Oven B", f"{SITE} · Paint line"),
]


def token(user: str) -> str:
    password = dev_password(user)
    if password is None:
        raise SystemExit("no development users: run `make up` first")
    resp = login(AUTH, user, password, timeout=10)
    resp.raise_for_status()
    return access_token(resp)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ensure_machines(client: httpx.Client, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    existing = {
        (m["name"], m["location"]): m
        for m in client.get(
            f"{QUERY}/api/v1/machines", params={"limit": 1000}, headers=headers
        ).json()["machines"]
    }
    out = {}
    for name, location in PLANT:
        m = existing.get((name, location))
        if m is None:
            resp = client.post(
                f"{QUERY}/api/v1/machines",
                json={"name": name, "location": location, "sensor_type": "Temperature"},
                headers=headers,
            )
            resp.raise_for_status()
            m = resp.json()["machine"]
        out[name] = m
    return out


def send(
    client: httpx.Client, headers: dict[str, str], m: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    for i in range(0, len(rows), 500):
        resp = client.post(
            f"{INGEST}/api/v1/data/ingest",
            json={
                "gateway_id": "GW-SCREENSHOTS",
                "timestamp": rows[i]["timestamp"],
                "batch": [
                    {
                        "machine_id": m["id"],
                        "sensor_type": "Temperature",
                        "location": m["location"],
                        "readings": rows[i : i + 500],
                    }
                ],
            },
            headers=headers,
        )
        resp.raise_for_status()


def seed(client: httpx.Client) -> dict[str, dict[str, Any]]:
    sup = {"Authorization": f"Bearer {token('supervisor')}"}
    mgmt = {"Authorization": f"Bearer {token('manager')}"}
    op = {"Authorization": f"Bearer {token('operator')}"}
    machines = ensure_machines(client, sup)
    client.post(
        f"{QUERY}/api/v1/config/update",
        json={"setting_name": "max_temperature_threshold", "setting_value": 85},
        headers=mgmt,
    ).raise_for_status()
    # The alerter re-reads the setting every few seconds: send once its rule has the value.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rules = client.get(f"{QUERY}/api/v1/alerts/rules", headers=op).json()["rules"]
        if any(r["managed_by"] and r["threshold"] == 85 for r in rules):
            break
        time.sleep(0.5)
    time.sleep(3)  # the rule row is there; the alerter loads it on its next refresh
    # On a 30-second grid: a second run rewrites the same points (no duplicates in InfluxDB).
    now = datetime.fromtimestamp(time.time() // 30 * 30, UTC)
    rnd = random.Random(7)
    for k, (name, _) in enumerate(PLANT):
        if name == "Mill 3":
            continue  # silent: shown offline
        base = 60 + 3 * k
        rows = []
        for i in range(120):
            t = now - timedelta(seconds=30 * (120 - i))
            temp = base + 4 * (i / 120) + rnd.uniform(-0.8, 0.8)
            if name == "Oven A" and i > 95:
                temp = 86 + (i - 95) * 0.4  # crosses max_temperature_threshold
            rows.append(
                {
                    "timestamp": iso(t),
                    "temperature": round(temp, 2),
                    "pressure": round(101 + rnd.uniform(-1, 1), 2),
                    "speed": 1400 + rnd.randint(-20, 20),
                }
            )
        send(client, op, machines[name], rows)
    # Mill 3 last spoke 40 minutes ago.
    send(
        client,
        op,
        machines["Mill 3"],
        [{"timestamp": iso(now - timedelta(minutes=40)), "temperature": 55.0, "speed": 900}],
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alerts = client.get(f"{QUERY}/api/v1/alerts", params={"state": "open"}, headers=op).json()[
            "alerts"
        ]
        if any(a["machine_id"] == machines["Oven A"]["id"] for a in alerts):
            break
        time.sleep(0.5)
    return machines


def sign_in(page: Page, user: str) -> None:
    page.goto(f"{QUERY}/console/")
    page.fill("#username", user)
    page.fill("#password", dev_password(user) or "")
    page.click("#login-form button")
    page.wait_for_selector(".tile")
    page.wait_for_selector("#live-state[data-up='1']")
    page.fill("#f-text", SITE)
    page.press("#f-text", "Enter")
    page.wait_for_selector(".tile")


def shoot(machines: dict[str, dict[str, Any]], chromium: str) -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for size, suffix in (((1366, 768), ""), ((820, 1180), "-tablet")):
            page = browser.new_page(viewport={"width": size[0], "height": size[1]})
            sign_in(page, "manager")
            page.wait_for_selector(".tile.sev-major, .tile.sev-critical")
            path = OUT / f"console-board{suffix}.png"
            page.screenshot(path=str(path))
            written.append(path)
            if suffix:
                page.close()
                continue
            page.goto(f"{QUERY}/console/#/machine/{machines['Oven A']['id']}")
            page.wait_for_selector("#chart canvas")
            page.wait_for_selector("#m-alerts table")
            for name, action in (("console-machine.png", None), ("console-alerts.png", "#/alerts")):
                if action:
                    page.goto(f"{QUERY}/console/{action}")
                    page.wait_for_selector("#alert-history table, #alert-history p")
                path = OUT / name
                page.screenshot(path=str(path), full_page=True)
                written.append(path)
            page.goto(f"{QUERY}/console/#/settings")
            page.wait_for_selector("#audit table")
            path = OUT / "console-settings.png"
            page.screenshot(path=str(path), full_page=True)
            written.append(path)
            # The live endpoint unreachable (as behind a broken proxy): the banner says so.
            page.route("**/api/v1/live", lambda route: route.abort())
            page.goto(f"{QUERY}/console/#/board")
            page.reload()
            page.wait_for_selector("#banner.lost")
            page.wait_for_selector(".tile")
            path = OUT / "console-connection-lost.png"
            page.screenshot(path=str(path))
            written.append(path)
            page.close()
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    with httpx.Client(timeout=30) as client:
        machines = seed(client)
    for path in shoot(machines, args.chromium):
        print(path.relative_to(ROOT))
