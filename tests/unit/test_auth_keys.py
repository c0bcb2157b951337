"""Signing keys: thumbprints, PEM loading, development generation, rotation, production refusal."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.auth.security.keys import (
    KeyConfigError,
    KeySet,
    generate_private_key,
    load_keyset,
    load_private_pem,
    private_key_pem,
    public_key_pem,
    rotate_dev_key,
    thumbprint,
)
from tests import auth_testing as testing


def test_thumbprint_matches_rfc7638_example() -> None:
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
        "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhA"
        "I4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("algorithm", ["RS256", "EdDSA"])
def test_published_jwk_round_trips_through_pyjwt(algorithm: str) -> None:
    keys = testing.new_keys(algorithm)
    [entry] = keys.jwks()["keys"]
    assert entry["kid"] == keys.current.kid == thumbprint(entry)
    assert entry["alg"] == algorithm
    token = jwt.encode({"x": 1}, keys.private_key, algorithm=algorithm)
    assert jwt.decode(token, jwt.PyJWK(entry).key, algorithms=[algorithm]) == {"x": 1}


def test_pem_with_escaped_newlines_loads() -> None:
    key = generate_private_key("EdDSA")
    one_line = private_key_pem(key).decode().strip().replace("\n", "\\n")
    assert KeySet.of(load_private_pem(one_line, "env")).current.kid == KeySet.of(key).current.kid


def test_unusable_keys_are_refused() -> None:
    with pytest.raises(KeyConfigError, match="not an unencrypted PEM"):
        load_private_pem("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----", "x")
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyConfigError, match="at least 2048"):
        load_private_pem(private_key_pem(weak), "weak")


def _load(key_dir: Path, production: bool = False, **kw: object) -> KeySet:
    args: dict[str, object] = {
        "private_key": None,
        "private_key_file": None,
        "previous_keys_dir": None,
        "key_dir": key_dir,
        "production": production,
        **kw,
    }
    return load_keyset(**args)  # type: ignore[arg-type]


def test_development_generates_once_and_keeps_the_key(tmp_path: Path) -> None:
    first = _load(tmp_path / "auth")
    again = _load(tmp_path / "auth")
    assert first.current.kid == again.current.kid
    key_file = tmp_path / "auth" / "signing-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_production_refuses_to_generate(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="production"):
        _load(tmp_path, production=True)
    assert not (tmp_path / "signing-key.pem").exists()


def test_key_file_and_previous_keys(tmp_path: Path) -> None:
    current, old = generate_private_key(), generate_private_key("EdDSA")
    key_file = tmp_path / "current.pem"
    key_file.write_bytes(private_key_pem(current))
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "old.pem").write_bytes(public_key_pem(old.public_key()))
    # The current key listed as "previous" too is published once.
    (previous / "current.pem").write_bytes(private_key_pem(current))
    keys = _load(tmp_path, True, private_key_file=key_file, previous_keys_dir=previous)
    kids = [k["kid"] for k in keys.jwks()["keys"]]
    assert kids == [KeySet.of(current).current.kid, KeySet.of(old).current.kid]


def test_rotate_dev_key_retires_the_old_key_into_the_jwks(tmp_path: Path) -> None:
    before = _load(tmp_path)
    old_kid, new_kid = rotate_dev_key(tmp_path)
    assert old_kid == before.current.kid != new_kid
    after = _load(tmp_path)
    assert after.current.kid == new_kid
    assert [e.kid for e in after.previous] == [old_kid]
