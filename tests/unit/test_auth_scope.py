"""The factory scope a token carries: the ``factories`` / ``machines`` / ``gateway_id`` claims
signed by auth's issuer come back as :class:`Principal` fields, and malformed ones are refused."""

from __future__ import annotations

import jwt
import pytest

from shared.auth.scope import covers, factories_claim, factory_id_error
from shared.auth.verify import Principal
from shared.http import ApiError
from tests import auth_testing as testing

MACHINE = "0b7a3c52-5f7e-4a4e-9d55-2f1f3b0e6a11"


async def principal(**kwargs: object) -> Principal:
    return await testing.authorizer().verify(testing.mint_token(**kwargs))  # type: ignore[arg-type]


async def test_a_token_for_every_factory_has_no_factory_limit() -> None:
    p = await principal(role="Management")
    assert p.claims["factories"] == "*"
    assert p.factories is None and p.factory_list is None
    assert p.sees_factory("anything") and p.sees_machine(MACHINE, "anything")


async def test_a_token_for_some_factories_sees_only_those() -> None:
    p = await principal(role="Operator", factories=["plant-b", "plant-a", "plant-a"])
    assert p.claims["factories"] == ["plant-a", "plant-b"]
    assert p.factories == {"plant-a", "plant-b"}
    assert p.factory_list == ["plant-a", "plant-b"]
    assert p.sees_factory("plant-a") and not p.sees_factory("plant-c")
    assert p.machines is None and p.gateway_id is None


async def test_a_gateway_token_names_its_gateway_factory_and_machines() -> None:
    p = await principal(
        role="Gateway", factories=["plant-a"], gateway_id="gw-7", machines=[MACHINE.upper()]
    )
    assert p.gateway_id == "gw-7"
    assert p.machines == {MACHINE}
    assert p.sees_machine(MACHINE, "plant-a")
    assert not p.sees_machine(MACHINE, "plant-b")
    assert not p.sees_machine("1b7a3c52-5f7e-4a4e-9d55-2f1f3b0e6a11", "plant-a")


async def test_a_token_for_no_factory_sees_none() -> None:
    p = await principal(factories=[])
    assert p.factories == frozenset() and not p.sees_factory("default")


async def test_a_principal_built_without_a_scope_sees_nothing() -> None:
    p = Principal("s", "u", "Operator", frozenset(), "j", 0, 0, {})
    assert not p.sees_factory("default")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"factories": None}, "MissingRequiredClaimError"),
        ({"factories": "all"}, "factories claim"),
        ({"factories": ["ok", 7]}, "factories claim"),
        ({"factories": ["has space"]}, "factories claim"),
        ({"machines": "m1"}, "machines claim"),
        ({"machines": [1]}, "machines claim"),
        ({"gateway_id": 5}, "gateway_id claim"),
    ],
)
async def test_malformed_scope_claims_are_refused(claims: dict[str, object], reason: str) -> None:
    token = testing.mint_token()
    forged = jwt.decode(token, options={"verify_signature": False}) | claims
    keys = testing.signing_keys()
    token = jwt.encode(
        {k: v for k, v in forged.items() if v is not None},
        keys.private_key,
        algorithm=keys.current.algorithm,
        headers={"kid": keys.current.kid},
    )
    with pytest.raises(ApiError) as e:
        await testing.authorizer().verify(token)
    assert e.value.status == 401
    assert reason in e.value.message


def test_only_a_wider_scope_may_grant_a_narrower_one() -> None:
    assert covers(None, None) and covers(None, ["a"])
    assert covers(frozenset({"a", "b"}), ["a"]) and covers(frozenset({"a"}), [])
    assert not covers(frozenset({"a"}), None)
    assert not covers(frozenset({"a"}), ["a", "b"])


def test_factory_ids_are_plain_words() -> None:
    assert factory_id_error("plant-A_1:x") is None
    for bad in ("", "a b", "a/b", "x" * 101, 3, None):
        assert factory_id_error(bad)
    assert factories_claim(None) == "*"
