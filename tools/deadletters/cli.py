"""``python -m tools.deadletters``: list, count, inspect, replay and purge dead letters.

Talks to the query API (Management token needed)::

    export MILLRACE_TOKEN=...                      # or: --username NAME (password prompted)
    python -m tools.deadletters stats
    python -m tools.deadletters list --reason unknown_machine --pending
    python -m tools.deadletters show 42
    python -m tools.deadletters replay --reason unknown_machine --limit 500
    python -m tools.deadletters replay --ids 42 43
    python -m tools.deadletters purge --reason invalid_json --before 2025-12-01T00:00:00Z --yes

Environment: ``QUERY_API_URL`` (default http://127.0.0.1:8002), ``AUTH_URL`` (default
http://127.0.0.1:8003), ``MILLRACE_TOKEN``. ``--json`` prints the API's answer as is.

Exit status: 0 done; 1 the API refused or could not be reached; 3 (replay) some selected
letters were not replayed (still invalid, busy, not found or not published).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from shared.errors import MillraceError
from tools.common.auth import access_token, login
from tools.deadletters import render

DEFAULT_QUERY_API = "http://127.0.0.1:8002"
DEFAULT_AUTH = "http://127.0.0.1:8003"
BASE = "/api/v1/deadletters"
NOT_ALL_REPLAYED = 3


class CliError(MillraceError):
    """Something to tell the user, then exit 1."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")
    common.add_argument(
        "--url",
        default=os.environ.get("QUERY_API_URL", DEFAULT_QUERY_API),
        help="query API base URL (env QUERY_API_URL)",
    )
    common.add_argument(
        "--username", help="log in at the auth service (AUTH_URL) instead of MILLRACE_TOKEN"
    )
    p = argparse.ArgumentParser(
        prog="python -m tools.deadletters",
        description="Dead letters of the telemetry pipeline (Management).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", parents=[common], help="list dead letters, newest first")
    ls.add_argument("--reason")
    ls.add_argument("--source", choices=("http", "mqtt", "writer", "replay", "unknown"))
    ls.add_argument("--gateway", dest="gateway_id")
    ls.add_argument("--machine", dest="machine_id")
    state = ls.add_mutually_exclusive_group()
    state.add_argument("--pending", action="store_const", const="false", dest="replayed")
    state.add_argument("--replayed", action="store_const", const="true", dest="replayed")
    ls.add_argument("--since", help="first seen at or after (ISO 8601 with zone)")
    ls.add_argument("--until", help="first seen before (ISO 8601 with zone)")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--offset", type=int, default=0)

    sub.add_parser("stats", parents=[common], help="counts by reason and by source")

    show = sub.add_parser("show", parents=[common], help="one letter with readings and payload")
    show.add_argument("id", type=int)

    rp = sub.add_parser("replay", parents=[common], help="validate again and publish")
    which = rp.add_mutually_exclusive_group(required=True)
    which.add_argument("--ids", type=int, nargs="+", metavar="ID")
    which.add_argument("--reason", help="the oldest --limit pending letters of this reason")
    rp.add_argument("--limit", type=int, default=100)
    rp.add_argument("--force", action="store_true", help="replay letters replayed already, too")

    pg = sub.add_parser("purge", parents=[common], help="delete letters (for good)")
    pg.add_argument("--ids", type=int, nargs="+", metavar="ID")
    pg.add_argument("--reason")
    pg.add_argument("--before", help="first seen before (ISO 8601 with zone)")
    pg.add_argument("--replayed", action="store_true", help="only letters replayed already")
    pg.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    args = p.parse_args(argv)
    if args.command == "purge":
        filtered = args.reason or args.before or args.replayed
        if bool(args.ids) == bool(filtered):
            p.error("purge: give either --ids or a filter (--reason/--before/--replayed)")
    return args


def token(args: argparse.Namespace, prompt: Callable[[str], str] = getpass.getpass) -> str:
    """``MILLRACE_TOKEN``, or a login with ``--username`` and a prompted password."""
    if args.username:
        password = prompt(f"Password for {args.username}: ")
        auth = os.environ.get("AUTH_URL", DEFAULT_AUTH).rstrip("/")
        try:
            resp = login(auth, args.username, password)
        except httpx.HTTPError as e:
            raise CliError(f"cannot reach the auth service at {auth}: {e}") from e
        if resp.status_code != 200:
            raise CliError(f"login failed ({resp.status_code}): {_message(resp)}")
        return access_token(resp)
    found = os.environ.get("MILLRACE_TOKEN")
    if not found:
        raise CliError("set MILLRACE_TOKEN or pass --username")
    return found


def request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any]]:
    """(method, path, params-or-body) of the API call a command makes."""
    if args.command == "list":
        names = ("reason", "source", "gateway_id", "machine_id", "replayed", "since", "until")
        params = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
        return "GET", BASE, {**params, "limit": args.limit, "offset": args.offset}
    if args.command == "stats":
        return "GET", f"{BASE}/stats", {}
    if args.command == "show":
        return "GET", f"{BASE}/{args.id}", {}
    if args.command == "replay":
        if args.ids:
            return "POST", f"{BASE}/replay", {"ids": args.ids, "force": args.force}
        return (
            "POST",
            f"{BASE}/replay",
            {
                "reason": args.reason,
                "limit": args.limit,
                "force": args.force,
            },
        )
    if args.ids:
        return "POST", f"{BASE}/purge", {"ids": args.ids}
    body: dict[str, Any] = {"reason": args.reason, "before": args.before}
    if args.replayed:
        body["replayed"] = True
    return "POST", f"{BASE}/purge", {k: v for k, v in body.items() if v is not None}


RENDER: dict[str, Callable[[dict[str, Any]], str]] = {
    "list": render.letters,
    "stats": render.stats,
    "show": render.letter,
    "replay": render.replay,
    "purge": render.purge,
}


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if not isinstance(body, dict):
        return resp.text[:200]
    text = str(body.get("message", ""))
    for err in body.get("errors") or []:
        where = err.get("field") or err.get("parameter") or ""
        text += f"\n  {where}: {err.get('error')}"
    return text


def _confirm(args: argparse.Namespace, what: dict[str, Any]) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise CliError("purge deletes readings for good: pass --yes to confirm")
    answer = input(f"Delete the dead letters matching {what}? Their readings are lost. [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise CliError("nothing deleted")


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    method, path, data = request(args)
    if args.command == "purge":
        _confirm(args, data)
    headers = {"Authorization": f"Bearer {token(args)}"}
    url = args.url.rstrip("/") + path
    try:
        if method == "GET":
            resp = httpx.get(url, params=data, headers=headers, timeout=60)
        else:
            resp = httpx.post(url, json=data, headers=headers, timeout=120)
    except httpx.HTTPError as e:
        raise CliError(f"cannot reach the query API at {args.url}: {e}") from e
    replay_partial = args.command == "replay" and resp.status_code == 503
    if resp.status_code != 200 and not replay_partial:
        raise CliError(f"{method} {path} answered {resp.status_code}: {_message(resp)}")
    body = resp.json()
    if replay_partial:
        print(f"warning: {body.get('message')}", file=sys.stderr)
    out(
        orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
        if args.json
        else RENDER[args.command](body)
    )
    if args.command == "replay":
        done = ("replayed", "already_replayed")
        if any(r["outcome"] not in done for r in body["results"]):
            return NOT_ALL_REPLAYED
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        code = run(args)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
