"""``make demo``: simulated gateways send over MQTT and HTTP; you watch readings arrive.

Logs in as the development operator (``.run/dev-users.txt``), runs the gateway simulator for a
while (5 machines, 2 readings/s each, both doors, a few bad messages and unknown machines so the
dead-letter path shows too), then prints the live status of those machines and the newest
readings of one of them, straight from the query API.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tools.common.auth import DEV_USERS, access_token, dev_password, login

ROOT = Path(__file__).resolve().parents[1]
AUTH = os.environ.get("AUTH_URL", "http://127.0.0.1:8003")
QUERY = os.environ.get("QUERY_API_URL", "http://127.0.0.1:8002")


def dev_login(role_user: str = "operator") -> str:
    password = dev_password(role_user)
    if password is None:
        raise SystemExit(f"no development user {role_user!r} in {DEV_USERS}: run `make up` first")
    resp = login(AUTH, role_user, password, timeout=10)
    resp.raise_for_status()
    return access_token(resp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--machines", type=int, default=5)
    args = parser.parse_args()
    token = dev_login()
    env = {**os.environ, "MILLRACE_TOKEN": token}
    print(
        f"Sending for {args.seconds:.0f} s: {args.machines} machines, MQTT + HTTP ...", flush=True
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.simulator",
            "--factory",
            "demo",
            "--machines",
            str(args.machines),
            "--rate",
            "2",
            "--duration",
            str(args.seconds),
            "--transport",
            "both",
            "--bad-rate",
            "0.02",
            "--unknown-rate",
            "0.02",
            "--measure",
            "influx",
        ],
        env=env,
        check=True,
    )
    headers = {"Authorization": f"Bearer {token}"}
    status = httpx.get(
        f"{QUERY}/api/v1/machines/status",
        params={"location": "Simulator demo"},
        headers=headers,
        timeout=10,
    ).json()
    print(f"\nLive status ({status['summary']['online']} of {status['summary']['total']} online):")
    print(f"{'machine':<38}{'online':<8}{'last seen':<30}last values")
    for m in status["machines"]:
        print(
            f"{m['machine_id']:<38}{m['online']!s:<8}{m['last_seen'] or '-':<30}{m['last_values']}"
        )
    if status["machines"]:
        mid = status["machines"][0]["machine_id"]
        resp = httpx.get(
            f"{QUERY}/api/v1/data/machine/{mid}", params={"limit": 5}, headers=headers, timeout=10
        )
        if resp.status_code != 200:
            raise SystemExit(f"history answered {resp.status_code}: {resp.text}")
        hist = resp.json()
        total = hist["pagination"]["total_records"]
        print(f"\nHistory of {mid} (last 24 h: {total} readings), first rows:")
        for row in hist["data"][:5]:
            print("  ", row)


if __name__ == "__main__":
    main()
