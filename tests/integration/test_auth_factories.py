"""Factories as a scope in auth: users carry factories, gateways one factory (and optionally some
of its machines), tokens carry the scope, and a manager of some factories manages only those."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jwt
import psycopg
import pytest
from starlette.testclient import TestClient

from shared.settings import PostgresSettings
from tests.auth_fixtures import exchange

if TYPE_CHECKING:
    from tests.auth_fixtures import LogIn, MakeUser

pytestmark = pytest.mark.integration

USERS = "/api/v1/auth/users"
GATEWAYS = "/api/v1/auth/gateways"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def factory() -> str:
    return f"plant-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def a() -> str:
    return factory()


@pytest.fixture
def b() -> str:
    return factory()


Machines = Callable[[str, int], list[str]]


@pytest.fixture
def machines_in(auth_postgres: PostgresSettings) -> Machines:
    """``machines_in(factory, n)``: n machines registered in that factory."""

    def make(factory_id: str, n: int) -> list[str]:
        with psycopg.connect(auth_postgres.url.get_secret_value()) as conn:
            return [
                str(row[0])
                for row in conn.execute(
                    "INSERT INTO machine_metadata (name, location, sensor_type, factory_id)"
                    " SELECT 'M-' || g, 'Hall', 'Temperature', %s FROM generate_series(1, %s) g"
                    " RETURNING id",
                    (factory_id, n),
                ).fetchall()
            ]

    return make


@pytest.fixture
def manager_of(make_user: MakeUser, log_in: LogIn) -> Callable[..., dict[str, str]]:
    """``manager_of(["A"])``: headers of a Management user of those factories (None = all)."""

    def make(factories: list[str] | None) -> dict[str, str]:
        return auth(log_in(make_user("Management", factories=factories))["access_token"])

    return make


def new_user(**fields: Any) -> dict[str, Any]:
    return {
        "username": f"u-{uuid.uuid4().hex[:10]}",
        "password": "long enough password",
        "role": "Operator",
        **fields,
    }


def test_login_refresh_and_me_carry_the_users_factories(
    auth_client: TestClient, make_user: MakeUser, log_in: LogIn, a: str, b: str
) -> None:
    pair = log_in(make_user("Operator", factories=[b, a]))
    assert pair["user"]["factories"] == sorted([a, b])
    assert claims(pair["access_token"])["factories"] == sorted([a, b])
    me = auth_client.get("/api/v1/auth/me", headers=auth(pair["access_token"])).json()
    assert me["token"]["factories"] == sorted([a, b])
    assert me["user"]["factories"] == sorted([a, b])
    refreshed = auth_client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    ).json()
    assert claims(refreshed["access_token"])["factories"] == sorted([a, b])
    everywhere = log_in(make_user("Operator"))
    assert everywhere["user"]["factories"] == "*"
    assert claims(everywhere["access_token"])["factories"] == "*"


def test_a_manager_grants_only_its_own_factories(
    auth_client: TestClient, manager_of: Callable[..., dict[str, str]], a: str, b: str
) -> None:
    manager = manager_of([a])
    created = auth_client.post(USERS, json=new_user(factories=[a]), headers=manager)
    assert created.status_code == 201, created.text
    assert created.json()["user"]["factories"] == [a]
    # Without factories, the new user gets the creator's.
    defaulted = auth_client.post(USERS, json=new_user(), headers=manager)
    assert defaulted.status_code == 201 and defaulted.json()["user"]["factories"] == [a]
    for wider in ([a, b], [b], "*"):
        refused = auth_client.post(USERS, json=new_user(factories=wider), headers=manager)
        assert refused.status_code == 403, refused.text
        assert f"manages factories {a} only: cannot grant access" in refused.json()["message"]
    # Nor may it widen an existing user of its factory.
    user_id = created.json()["user"]["id"]
    widened = auth_client.patch(f"{USERS}/{user_id}", json={"factories": "*"}, headers=manager)
    assert widened.status_code == 403
    # Management of every factory grants anything.
    top = manager_of(None)
    for scope in ([a, b], "*"):
        done = auth_client.post(USERS, json=new_user(factories=scope), headers=top)
        assert done.status_code == 201 and done.json()["user"]["factories"] == (
            sorted(scope) if isinstance(scope, list) else "*"
        )


def test_a_manager_does_not_see_or_change_users_outside_its_factories(
    auth_client: TestClient,
    manager_of: Callable[..., dict[str, str]],
    make_user: MakeUser,
    a: str,
    b: str,
) -> None:
    mine = make_user("Operator", factories=[a])
    theirs = make_user("Operator", factories=[b])
    shared = make_user("Operator", factories=[a, b])
    everywhere = make_user("Operator")
    manager = manager_of([a])
    listed = auth_client.get(USERS, params={"limit": 500}, headers=manager).json()
    names = {u["username"] for u in listed["users"]}
    assert mine.username in names
    assert not names & {theirs.username, shared.username, everywhere.username}
    assert all(u["factories"] != "*" and set(u["factories"]) <= {a} for u in listed["users"])
    for account in (theirs, shared, everywhere):
        path = f"{USERS}/{account.id}"
        assert auth_client.get(path, headers=manager).status_code == 404
        assert (
            auth_client.patch(path, json={"role": "Supervisor"}, headers=manager).status_code == 404
        )
        assert auth_client.delete(path, headers=manager).status_code == 404
    assert auth_client.get(f"{USERS}/{mine.id}", headers=manager).status_code == 200


def test_changing_a_users_factories_voids_their_tokens_and_refresh_brings_the_new_scope(
    auth_client: TestClient,
    manager_of: Callable[..., dict[str, str]],
    make_user: MakeUser,
    log_in: LogIn,
    a: str,
    b: str,
) -> None:
    account = make_user("Operator", factories=[a])
    pair = log_in(account)
    changed = auth_client.patch(
        f"{USERS}/{account.id}", json={"factories": [b]}, headers=manager_of(None)
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["user"]["factories"] == [b]
    old = auth_client.get("/api/v1/auth/me", headers=auth(pair["access_token"]))
    assert old.status_code == 401
    refreshed = auth_client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert claims(refreshed.json()["access_token"])["factories"] == [b]


@pytest.mark.parametrize(
    ("factories", "error"),
    [
        ([], 'A non-empty list of factory ids, or "*" for every factory'),
        ("all", 'A non-empty list of factory ids, or "*" for every factory'),
        (["has space"], "A factory id is 1 to 100 characters"),
        ([7], "A factory id is 1 to 100 characters"),
    ],
)
def test_bad_factories_are_refused_with_the_field(
    auth_client: TestClient,
    manager_of: Callable[..., dict[str, str]],
    factories: Any,
    error: str,
) -> None:
    response = auth_client.post(USERS, json=new_user(factories=factories), headers=manager_of(None))
    assert response.status_code == 400, response.text
    [problem] = response.json()["errors"]
    assert problem["field"] == "factories" and problem["error"].startswith(error)


def register(client: TestClient, headers: dict[str, str], **fields: Any) -> Any:
    body = {"gateway_id": f"GW-{uuid.uuid4().hex[:8]}", **fields}
    return client.post(GATEWAYS, json=body, headers=headers)


def token_of(client: TestClient, registered: dict[str, Any]) -> dict[str, Any]:
    response = exchange(client, registered["client_id"], registered["client_secret"])
    assert response.status_code == 200, response.text
    return claims(response.json()["access_token"])


def test_a_gateway_token_carries_its_factory_and_machines(
    auth_client: TestClient,
    manager_of: Callable[..., dict[str, str]],
    machines_in: Machines,
    a: str,
) -> None:
    [m1, m2] = machines_in(a, 2)
    limited = register(auth_client, manager_of(None), factory_id=a, machine_ids=[m2, m1.upper()])
    assert limited.status_code == 201, limited.text
    gateway = limited.json()["gateway"]
    assert gateway["factory_id"] == a and gateway["machine_ids"] == sorted([m1, m2])
    token = token_of(auth_client, limited.json())
    assert token["factories"] == [a]
    assert token["gateway_id"] == gateway["gateway_id"]
    assert token["machines"] == sorted([m1, m2])
    whole = register(auth_client, manager_of(None), factory_id=a)
    assert whole.json()["gateway"]["machine_ids"] is None
    token = token_of(auth_client, whole.json())
    assert token["factories"] == [a] and "machines" not in token
    # Without a factory: INGEST_DEFAULT_FACTORY_ID.
    default = register(auth_client, manager_of(None))
    assert default.json()["gateway"]["factory_id"] == "default"
    assert (
        register(auth_client, manager_of(None), factory_id=None).json()["gateway"]["factory_id"]
        == "default"
    )
    assert token_of(auth_client, default.json())["factories"] == ["default"]


def test_a_gateways_machines_must_be_of_its_factory(
    auth_client: TestClient,
    manager_of: Callable[..., dict[str, str]],
    machines_in: Machines,
    a: str,
    b: str,
) -> None:
    [own] = machines_in(a, 1)
    [foreign] = machines_in(b, 1)
    stranger = str(uuid.uuid4())
    response = register(
        auth_client, manager_of(None), factory_id=a, machine_ids=[own, foreign, stranger]
    )
    assert response.status_code == 400, response.text
    assert sorted(e["value"] for e in response.json()["errors"]) == sorted([foreign, stranger])
    assert f"Machine {foreign} is not registered in factory {a}" in response.text
    for bad in ([], ["not-a-uuid"], own):
        refused = register(auth_client, manager_of(None), factory_id=a, machine_ids=bad)
        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"][0]["field"] == "machine_ids"
    unknown = register(auth_client, manager_of(None), factory=a)
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["field"] == "factory"


def test_a_manager_registers_lists_and_disables_only_its_factorys_gateways(
    auth_client: TestClient, manager_of: Callable[..., dict[str, str]], a: str, b: str
) -> None:
    manager = manager_of([a])
    refused = register(auth_client, manager, factory_id=b)
    assert refused.status_code == 403, refused.text
    # Without a factory, a manager of one factory registers it there.
    own = register(auth_client, manager)
    assert own.status_code == 201 and own.json()["gateway"]["factory_id"] == a
    other = register(auth_client, manager_of(None), factory_id=b)
    assert other.status_code == 201
    listed = auth_client.get(GATEWAYS, headers=manager).json()["gateways"]
    assert {g["factory_id"] for g in listed} == {a}
    other_id = other.json()["gateway"]["gateway_id"]
    assert auth_client.post(f"{GATEWAYS}/{other_id}/disable", headers=manager).status_code == 404
    own_id = own.json()["gateway"]["gateway_id"]
    assert auth_client.post(f"{GATEWAYS}/{own_id}/disable", headers=manager).status_code == 200
