"""Signing keys: load or (in development) generate, publish as JWKS, name by thumbprint.

The ``kid`` of every key is its RFC 7638 JWK thumbprint, so the same key always has the same id
on every replica and after every restart, without any registry.

Rotation: put the new private key in ``AUTH_PRIVATE_KEY[_FILE]`` and the old one (public or
private PEM) in ``AUTH_PREVIOUS_KEYS_DIR``; restart auth. Tokens signed by the old key keep
verifying (it stays in the JWKS) and can be removed once the longest token TTL has passed. In
development, ``python -m services.auth rotate-key`` does exactly this with the generated key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from shared.errors import MillraceError

log = logging.getLogger(__name__)

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey

SIGNING_KEY_FILE = "signing-key.pem"
MIN_RSA_BITS = 2048


class KeyConfigError(MillraceError):
    """The signing key configuration is missing or unusable; auth cannot start."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")


def algorithm_for(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyConfigError(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS}")
        return "RS256"
    return "EdDSA"


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The key's public members only (what RFC 7638 hashes)."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {
            "kty": "RSA",
            "n": _b64url(_int_bytes(numbers.n)),
            "e": _b64url(_int_bytes(numbers.e)),
        }
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}


_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return _b64url(hashlib.sha256(canonical).digest())


@dataclass(frozen=True, slots=True)
class PublicKeyEntry:
    kid: str
    algorithm: str
    key: PublicKey

    @classmethod
    def of(cls, key: PublicKey) -> PublicKeyEntry:
        return cls(kid=thumbprint(public_jwk(key)), algorithm=algorithm_for(key), key=key)

    def jwk(self) -> dict[str, str]:
        return {**public_jwk(self.key), "kid": self.kid, "alg": self.algorithm, "use": "sig"}


@dataclass(frozen=True, slots=True)
class KeySet:
    """The key auth signs with, and the retired keys it still publishes."""

    private_key: PrivateKey
    current: PublicKeyEntry
    previous: tuple[PublicKeyEntry, ...] = ()

    @classmethod
    def of(cls, private_key: PrivateKey, previous: tuple[PublicKey, ...] = ()) -> KeySet:
        current = PublicKeyEntry.of(private_key.public_key())
        by_kid = {entry.kid: entry for entry in map(PublicKeyEntry.of, previous)}
        by_kid.pop(current.kid, None)
        return cls(private_key=private_key, current=current, previous=tuple(by_kid.values()))

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [self.current.jwk(), *(entry.jwk() for entry in self.previous)]}


def generate_private_key(algorithm: str = "RS256") -> PrivateKey:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
    raise KeyConfigError(f"unsupported algorithm {algorithm!r} (RS256 or EdDSA)")


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _normalize_pem(data: bytes | str) -> bytes:
    text = data.decode() if isinstance(data, bytes) else data
    # Env files often carry a PEM on one line with literal "\n" escapes.
    return text.replace("\\n", "\n").strip().encode() + b"\n"


def _checked(load: Callable[[], object], source: str, what: str, kinds: Any) -> Any:
    """The key ``load()`` reads, if it is one of ``kinds`` and strong enough to sign with."""
    try:
        key = load()
    except (ValueError, TypeError) as e:
        raise KeyConfigError(f"{source}: not {what} ({e})") from e
    if not isinstance(key, kinds):
        raise KeyConfigError(f"{source}: only RSA and Ed25519 keys are supported")
    algorithm_for(key)
    return key


def load_private_pem(data: bytes | str, source: str) -> PrivateKey:
    pem = _normalize_pem(data)
    key: PrivateKey = _checked(
        lambda: serialization.load_pem_private_key(pem, password=None),
        source,
        "an unencrypted PEM private key",
        PrivateKey,
    )
    return key


def load_public_pem(data: bytes | str, source: str) -> PublicKey:
    """A public key PEM, or the public half of a private key PEM."""
    pem = _normalize_pem(data)
    if b"PRIVATE KEY" in pem:
        return load_private_pem(pem, source).public_key()
    key: PublicKey = _checked(
        lambda: serialization.load_pem_public_key(pem), source, "a PEM public key", PublicKey
    )
    return key


def write_private_key(path: Path, key: PrivateKey) -> bool:
    """Write ``key`` to ``path`` (mode 0600) unless a file is already there; True if written.

    Linking a finished temporary file into place means two processes generating at the same
    time never see a half-written key, and exactly one of them wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(private_key_pem(key))
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise KeyConfigError(f"cannot read key file {path}: {e}") from e


def _previous_keys(directory: Path | None) -> tuple[PublicKey, ...]:
    if directory is None or not directory.is_dir():
        return ()
    return tuple(load_public_pem(_read(p), str(p)) for p in sorted(directory.glob("*.pem")))


def load_keyset(
    *,
    private_key: str | None,
    private_key_file: Path | None,
    previous_keys_dir: Path | None,
    key_dir: Path,
    production: bool,
) -> KeySet:
    """The configured key set; in development, generate and persist a key when none is set."""
    if private_key:
        key = load_private_pem(private_key, "AUTH_PRIVATE_KEY")
    elif private_key_file is not None:
        key = load_private_pem(_read(private_key_file), str(private_key_file))
    elif production:
        raise KeyConfigError("no signing key configured (AUTH_PRIVATE_KEY[_FILE]) in production")
    else:
        path = key_dir / SIGNING_KEY_FILE
        if not path.exists() and write_private_key(path, generate_private_key()):
            log.warning("development: generated a new signing key in %s", path)
        key = load_private_pem(_read(path), str(path))
    if previous_keys_dir is None and not production:
        previous_keys_dir = key_dir / "previous"
    keyset = KeySet.of(key, _previous_keys(previous_keys_dir))
    log.info(
        "signing with key %s (%s); %d previous key(s) published",
        keyset.current.kid,
        keyset.current.algorithm,
        len(keyset.previous),
    )
    return keyset


def rotate_dev_key(key_dir: Path) -> tuple[str, str]:
    """Development: retire the generated key into ``previous/`` and generate a new one.

    Returns (old kid, new kid). Restart auth to sign with the new key.
    """
    path = key_dir / SIGNING_KEY_FILE
    old = load_private_pem(_read(path), str(path))
    old_kid = PublicKeyEntry.of(old.public_key()).kid
    previous = key_dir / "previous"
    previous.mkdir(parents=True, exist_ok=True, mode=0o700)
    (previous / f"{old_kid}.pem").write_bytes(public_key_pem(old.public_key()))
    new = generate_private_key(algorithm_for(old))
    path.unlink()
    if not write_private_key(path, new):
        raise KeyConfigError(f"{path} appeared while rotating; another rotation running?")
    return old_kid, PublicKeyEntry.of(new.public_key()).kid
