"""What an end-to-end run registers in the running stack, recorded by id as it is made and removed
when the run ends (the session fixture in ``tests/e2e/conftest.py``).

The stack is the developer's own (``make up``): without this, every run would leave its machines,
their rules and alerts, its users and gateways in the database the console of ``make demo`` shows.
Only what was recorded here is removed, never anything found by name. Machines and alert rules go
through the query API as a Management user would delete them; alerts (the API keeps them as
history), users (the API only deactivates them) and gateways (the API only disables them) through
SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from shared.settings import PostgresSettings


class LeftBehind(UserWarning):
    """Something the run made could not be removed (the run's outcome stands)."""


@dataclass
class Made:
    machines: set[str] = field(default_factory=set)  # machine ids
    rules: set[str] = field(default_factory=set)  # alert rule ids
    users: set[str] = field(default_factory=set)  # usernames
    gateways: set[str] = field(default_factory=set)  # gateway ids
    # The run's tokens (``tests/e2e/pipeline.py`` Tokens: role → token), for the API calls.
    tokens: Callable[[str], str] | None = None

    def __bool__(self) -> bool:
        return bool(self.machines or self.rules or self.users or self.gateways)


MADE = Made()  # this run's


def machine(machine_id: str) -> str:
    MADE.machines.add(machine_id)
    return machine_id


def user(username: str) -> str:
    MADE.users.add(username)
    return username


def gateway(gateway_id: str) -> str:
    MADE.gateways.add(gateway_id)
    return gateway_id


def record(body: dict[str, Any]) -> None:
    """Records what a create call's 201 answer says it made: a machine, rule, user or gateway."""
    if "machine" in body:
        machine(str(body["machine"]["id"]))
    if "rule" in body:
        MADE.rules.add(str(body["rule"]["id"]))
    if "user" in body:
        user(str(body["user"]["username"]))
    if "gateway" in body:
        gateway(str(body["gateway"]["gateway_id"]))


def created(resp: httpx.Response) -> httpx.Response:
    """``resp`` of a create call, what it made recorded (when it answered 201)."""
    if resp.status_code == 201:
        record(resp.json())
    return resp


def _api_delete(urls: Iterable[str], headers: dict[str, str]) -> tuple[set[str], list[str]]:
    """DELETE each URL; (the URLs that are gone, problems). Already gone (404) counts as gone:
    a test may delete what it made itself."""
    gone, problems = set(), []
    for url in urls:
        try:
            status = httpx.delete(url, headers=headers, timeout=10).status_code
        except httpx.HTTPError as e:
            problems.append(f"DELETE {url}: {type(e).__name__}: {e}")
            continue
        if status in (204, 404):
            gone.add(url)
        else:
            problems.append(f"DELETE {url} answered {status}")
    return gone, problems


def _through_the_api(made: Made, query: str) -> tuple[set[str], set[str], list[str]]:
    """Rules (recorded, and those scoped to a recorded machine), then machines, deleted through
    the query API at ``query`` as Management; (rules, machines) still there, problems."""
    rules, machines = set(made.rules), set(made.machines)
    try:
        assert made.tokens is not None, "no token: the run signed no user in"
        headers = {"Authorization": f"Bearer {made.tokens('Management')}"}
        listed = httpx.get(f"{query}/api/v1/alerts/rules", headers=headers, timeout=10)
        listed.raise_for_status()
    except (AssertionError, httpx.HTTPError) as e:
        return rules, machines, [f"no Management access to the query API ({e})"]
    rules |= {
        r["id"]
        for r in listed.json()["rules"]
        if r["scope_type"] == "machine" and r["scope_value"] in made.machines
    }
    rule_urls = {f"{query}/api/v1/alerts/rules/{r}": r for r in rules}
    gone, problems = _api_delete(rule_urls, headers)
    machine_urls = {f"{query}/api/v1/machines/{m}": m for m in machines}
    gone_machines, more = _api_delete(machine_urls, headers)
    return (
        {r for u, r in rule_urls.items() if u not in gone},
        {m for u, m in machine_urls.items() if u not in gone_machines},
        problems + more,
    )


def _through_sql(made: Made, rules: set[str], machines: set[str]) -> None:
    """What the API keeps or could not delete, and the alerts of the run's machines."""
    with psycopg.connect(PostgresSettings().url.get_secret_value()) as conn:
        ids = sorted(made.machines)
        conn.execute(
            "DELETE FROM alert_deliveries WHERE alert_id IN"
            " (SELECT id FROM alerts WHERE machine_id = ANY(%s::uuid[]))",
            (ids,),
        )
        conn.execute("DELETE FROM alerts WHERE machine_id = ANY(%s::uuid[])", (ids,))
        conn.execute(
            "DELETE FROM alert_rules WHERE id = ANY(%s::uuid[]) AND managed_by IS NULL",
            (sorted(rules),),
        )
        conn.execute("DELETE FROM machine_metadata WHERE id = ANY(%s::uuid[])", (sorted(machines),))
        conn.execute("DELETE FROM users WHERE username = ANY(%s)", (sorted(made.users),))
        conn.execute(
            "DELETE FROM gateway_clients WHERE gateway_id = ANY(%s)", (sorted(made.gateways),)
        )


def remove(made: Made, query: str) -> list[str]:
    """Removes what ``made`` records from the running stack (its query API at ``query``); what
    went wrong doing so."""
    if not made:
        return []
    rules, machines, problems = _through_the_api(made, query)
    try:
        _through_sql(made, rules, machines)
    except psycopg.Error as e:
        left = f"machines {sorted(made.machines)}, users {sorted(made.users)}"
        return [*problems, f"SQL removal failed ({type(e).__name__}: {e}); left behind: {left}"]
    return [f"{p} (deleted by SQL instead)" for p in problems]
