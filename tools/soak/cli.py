"""``python -m tools.soak`` (``make soak``): a concurrent soak of the HTTP doors, with its verdict.

Starts a private auth, ingest_gateway and query_api beside the running pipeline (``make up``
first; the soak shares its PostgreSQL, Redis, RabbitMQ and InfluxDB), then for ``--duration``
seconds sends a mix of valid and invalid requests over ``--connections`` connections per door
with tokens that live ``--token-ttl`` seconds, revokes some while they are in use, and rotates
auth's signing key part-way. Exits 1 if any answer was a 5xx, a transport error, or not the
expected one, or if a log line of the run carries a token or secret it issued, or an ERROR.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
import uuid
from collections import defaultdict

import httpx

from tools.soak.load import Outcome, Token, Tokens, run_load
from tools.soak.logscan import log_offsets, scan_logs
from tools.soak.stack import RUN, PrivateStack, private_stack


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    p.add_argument("--connections", type=int, default=16, help="connections per door (default 16)")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="requests/s over all doors; 0 = as fast as they go (default)",
    )
    p.add_argument(
        "--half-max",
        action="store_true",
        help="measure the maximum rate for 20 s first, then soak at half of it",
    )
    p.add_argument("--token-ttl", type=int, default=60, help="life of the access tokens (s)")
    p.add_argument("--revoke-every", type=float, default=5.0, help="seconds between revocations")
    p.add_argument(
        "--rotate-at",
        type=float,
        default=0.5,
        help="fraction of the run at which auth's key is rotated (default 0.5)",
    )
    p.add_argument(
        "--base-port",
        type=int,
        default=8201,
        help="the private auth, ingest_gateway and query_api listen on this port and the next two",
    )
    return p


class Session:
    """Everything around the load: users, the soak machine, renewals, revocations, rotation."""

    def __init__(self, stack: PrivateStack, args: argparse.Namespace, outcome: Outcome) -> None:
        self.stack = stack
        self.args = args
        self.outcome = outcome
        self.tokens = Tokens(stack, args.token_ttl)
        self.tokens.renew()
        self.auth = httpx.AsyncClient(base_url=stack.url("auth"), timeout=30.0)
        self.query = httpx.AsyncClient(base_url=stack.url("query_api"), timeout=30.0)
        self.username = f"soak-{uuid.uuid4().hex[:8]}"
        self.password = secrets.token_urlsafe(18)
        self.user_id = ""
        self.machine_id = ""
        self.restarting = asyncio.Event()
        self.rotations = self.revocations = self.logins = 0
        self.victim: Token | None = None

    def _admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.mint('Management').token}"}

    async def setup(self) -> None:
        self.outcome.issued.add(self.password)
        r = await self.auth.post(
            "/api/v1/auth/users",
            headers=self._admin(),
            json={"username": self.username, "password": self.password, "role": "Operator"},
        )
        r.raise_for_status()
        self.user_id = r.json()["user"]["id"]
        r = await self.query.post(
            "/api/v1/machines",
            headers=self._admin(),
            json={
                "name": f"Soak {self.username}",
                "location": "Soak",
                "sensor_type": "Temperature",
                "status": "active",
            },
        )
        r.raise_for_status()
        self.machine_id = r.json()["machine"]["id"]
        await self.login()

    async def teardown(self) -> None:
        await self.query.delete(f"/api/v1/machines/{self.machine_id}", headers=self._admin())
        await self.auth.delete(f"/api/v1/auth/users/{self.user_id}", headers=self._admin())
        await self.auth.aclose()
        await self.query.aclose()

    async def login(self) -> None:
        r = await self.auth.post(
            "/api/v1/auth/login", json={"username": self.username, "password": self.password}
        )
        if r.status_code != 200:
            self.outcome.violate(f"auth login: {r.status_code} {r.text[:200]}")
            return
        body = r.json()
        self.outcome.issued.update((body["access_token"], body["refresh_token"]))
        self.tokens.logins.append(
            Token(body["access_token"], int(time.time()) + body["expires_in"], "login")
        )
        self.tokens.logins[:] = self.tokens.logins[-20:]
        self.logins += 1
        r = await self.auth.post(
            "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
        )
        if r.status_code != 200:
            self.outcome.violate(f"auth refresh: {r.status_code} {r.text[:200]}")
            return
        rotated = r.json()
        self.outcome.issued.update((rotated["access_token"], rotated["refresh_token"]))

    async def revoke(self) -> None:
        """Log out the token put in use at the previous call, and put a new one in use.

        Each revoked token has carried requests for ``revoke_every`` seconds before, and only
        those tokens are revoked: the rest of the population stays valid until it expires.
        Minted tokens and login tokens take turns.
        """
        now = time.time()
        victim, self.victim = self.victim, None
        if self.revocations % 2 and self.tokens.logins:
            fresh = self.tokens.logins[-1]
        else:
            fresh = self.tokens.mint("Operator")
            self.tokens.minted["Operator"].append(fresh)
        if fresh.exp > now + self.args.revoke_every + 2 and fresh.revoked_at is None:
            self.victim = fresh
        if victim is None or victim.revoked_at is not None or victim.exp <= now + 1:
            return
        victim.revoking = True
        r = await self.auth.post(
            "/api/v1/auth/logout", headers={"Authorization": f"Bearer {victim.token}"}
        )
        if r.status_code == 200:
            victim.revoked_at = time.time()
            self.revocations += 1
        else:
            self.outcome.violate(f"auth logout: {r.status_code} {r.text[:200]}")

    async def chores(self, duration_s: float) -> None:
        """Renew tokens every ttl/3, log in again, revoke every ``revoke_every``, rotate once."""
        start = time.monotonic()
        rotate_at = start + duration_s * self.args.rotate_at
        next_renew = next_revoke = start
        while (now := time.monotonic()) < start + duration_s:
            if now >= next_renew:
                self.tokens.renew()
                if not self.restarting.is_set():
                    await self._tolerating_restart(self.login())
                next_renew = now + max(1.0, self.args.token_ttl / 3)
            if now >= next_revoke and not self.restarting.is_set():
                await self._tolerating_restart(self.revoke())
                next_revoke = now + self.args.revoke_every
            if now >= rotate_at and not self.rotations:
                self.restarting.set()
                try:
                    await asyncio.to_thread(self.stack.rotate_key)
                    self.tokens.issuer = self.stack.issuer()
                    self.tokens.renew()
                    self.rotations += 1
                finally:
                    self.restarting.clear()
            await asyncio.sleep(0.2)  # the chores' own cadence

    async def _tolerating_restart(self, chore: object) -> None:
        try:
            await chore  # type: ignore[misc]
        except httpx.TransportError as e:
            self.outcome.violate(f"auth chore: {type(e).__name__}")


async def soak(stack: PrivateStack, args: argparse.Namespace, outcome: Outcome) -> Session:
    session = Session(stack, args, outcome)
    await session.setup()
    try:
        rate = args.rate
        if args.half_max:
            probe = Outcome()
            await run_load(
                stack,
                session.tokens,
                session.machine_id,
                duration_s=20,
                connections=args.connections,
                rate=0,
                auth_restarting=session.restarting,
                outcome=probe,
            )
            rate = probe.total / 20 / 2
            print(f"maximum measured: {probe.total / 20:,.0f} requests/s; soaking at {rate:,.0f}/s")
            outcome.counts.update(probe.counts)
            outcome.violations += probe.violations
            outcome.violation_count += probe.violation_count
            outcome.five_xx += probe.five_xx
        await asyncio.gather(
            run_load(
                stack,
                session.tokens,
                session.machine_id,
                duration_s=args.duration,
                connections=args.connections,
                rate=rate,
                auth_restarting=session.restarting,
                outcome=outcome,
            ),
            session.chores(args.duration),
        )
    finally:
        outcome.issued |= session.tokens.issued
        await session.teardown()
    return session


def report(outcome: Outcome, session: Session, elapsed: float) -> None:
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for (door, scenario, want, got), n in sorted(outcome.counts.items()):
        rows[(door, scenario)][f"{want}→{got}"] = n
    print(f"\n{'door':<7} {'scenario':<28} answers (expected→got: count)")
    for (door, scenario), answers in rows.items():
        print(f"{door:<7} {scenario:<28} " + ", ".join(f"{k}: {v}" for k, v in answers.items()))
    print(
        f"\n{outcome.total:,} requests in {elapsed:.0f} s ({outcome.total / elapsed:,.0f}/s); "
        f"{session.logins} logins, {session.revocations} revocations, "
        f"{session.rotations} key rotation(s)"
    )
    print(
        f"5xx: {outcome.five_xx}; transport errors: {outcome.transport_errors}; "
        f"violations: {outcome.violation_count}"
    )
    for v in outcome.violations:
        print(f"  - {v}")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    outcome = Outcome()
    marks = log_offsets(RUN)
    started = time.monotonic()
    with private_stack(args.base_port, access_ttl_s=max(30, args.token_ttl)) as stack:
        session = asyncio.run(soak(stack, args, outcome))
    elapsed = time.monotonic() - started
    report(outcome, session, elapsed)
    problems = scan_logs(RUN, marks, outcome.issued, error_files=("soak-",))
    for p in problems[:20]:
        print(f"  log: {p}")
    print(f"log scan: {len(problems)} problem(s) in {RUN.name}/*.log")
    sys.exit(1 if outcome.violation_count or problems else 0)


if __name__ == "__main__":
    main()
