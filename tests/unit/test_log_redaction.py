"""No secret reaches a log line, wherever it sits in the record; times are ISO-8601 UTC."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from services.auth.security.keys import private_key_pem
from services.auth.tokens import new_refresh_token
from shared import log as shared_log
from shared.redact import GATEWAY_SECRET_PREFIX, REDACTED, redact, register_secret
from tests import auth_testing as testing


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """Log records of a logger wired exactly as configure_logging wires the root logger."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(shared_log._ContextFilter("test"))
    handler.setFormatter(shared_log.json_formatter())
    logger = logging.getLogger("millrace.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield out
    logger.removeHandler(handler)


def records(out: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_an_exception_carrying_an_access_token_is_redacted_in_message_and_traceback(
    lines: io.StringIO,
) -> None:
    token = testing.mint_token("Operator")
    logger = logging.getLogger("millrace.test.redaction")
    try:
        {}[token]
    except KeyError as e:
        logger.exception("cache miss: %s", e)
    text = lines.getvalue()
    assert token not in text
    assert token.split(".")[2] not in text  # not even the signature alone
    (record,) = records(lines)
    assert REDACTED in record["message"] and REDACTED in record["exc_info"]
    assert "KeyError" in record["exc_info"]


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        ("postgresql://millrace:pg-pass-1234@db:5432/millrace", "postgresql://millrace:"),
        ("amqp://ingest:Rabbit-Pw-99@broker:5672/", "amqp://ingest:"),
        ("Authorization: Bearer abc.def.ghi-123456", "Authorization: Bearer "),
        ('{"password": "correct horse"}', '{"password": "'),
        ('body {\\"client_secret\\": \\"xyzzy-plugh\\"}', 'body {\\"client_secret\\": \\"'),
        ("refresh_token=opaque-value-1&x=1", "refresh_token="),
    ],
)
def test_credentials_in_text_are_redacted_and_the_context_kept(secret: str, shown: str) -> None:
    cleaned = redact(f"failed: {secret} (retrying)")
    assert cleaned.startswith(f"failed: {shown}{REDACTED}")
    assert cleaned.endswith("(retrying)")


def test_secrets_millrace_issues_are_recognised_by_their_shape() -> None:
    refresh = new_refresh_token()
    gateway_secret = GATEWAY_SECRET_PREFIX + "Zm9vYmFyYmF6cXV4cXV1eA"
    text = redact(f"rotated {refresh} and {gateway_secret}")
    assert refresh not in text and gateway_secret not in text
    assert text == f"rotated {REDACTED} and {REDACTED}"


def test_a_private_key_in_a_json_line_is_redacted(lines: io.StringIO) -> None:
    pem = private_key_pem(testing.signing_keys().private_key).decode()
    logging.getLogger("millrace.test.redaction").warning("bad key %s", pem)
    text = lines.getvalue()
    assert "PRIVATE KEY" not in text and pem.splitlines()[1] not in text


def test_registered_values_are_redacted_wherever_they_appear(lines: io.StringIO) -> None:
    register_secret("an-influx-token-value")
    logging.getLogger("millrace.test.redaction").info(
        "connected", extra={"detail": "token an-influx-token-value accepted"}
    )
    assert "an-influx-token-value" not in lines.getvalue()


def test_messages_operators_need_are_left_alone() -> None:
    for text in (
        "Invalid token: expired",
        "password rehashed for operator",
        "JWKS fetch from http://127.0.0.1:8003/.well-known/jwks.json failed",
        "machine 6f1c7a52-3d0e-4f57-9a43-0d8f2f0c9e11 unknown",
    ):
        assert redact(text) == text


def test_times_are_iso_8601_utc(lines: io.StringIO) -> None:
    logging.getLogger("millrace.test.redaction").info("hello")
    (record,) = records(lines)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])


def test_a_routine_broker_reconnect_is_a_warning(lines: io.StringIO) -> None:
    logger = logging.getLogger("aio_pika.robust_connection")
    handler = logging.getLogger("millrace.test.redaction").handlers[0]
    logger.addHandler(handler)
    try:
        logger.error("Reconnect attempt failed %s due to %s", "conn", "ConnectionError")
    finally:
        logger.removeHandler(handler)
    (record,) = records(lines)
    assert record["level"] == "WARNING"


def test_configured_secrets_are_registered_when_settings_are_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.auth.settings import Settings

    monkeypatch.setenv("POSTGRES_URL", "postgresql://millrace:pg-Secret-4711@db:5432/millrace")
    monkeypatch.setenv("AUTH_PRIVATE_KEY", "not-a-pem-but-secret-0815")
    Settings()
    text = redact("dsn pg-Secret-4711 key not-a-pem-but-secret-0815")
    assert "pg-Secret-4711" not in text and "not-a-pem-but-secret-0815" not in text


@pytest.mark.parametrize(
    ("logger_name", "template", "args"),
    [
        (
            "aiormq.connection",
            "error when creating transport: %r",
            ("ConnectionRefusedError(111, 'Connection refused')",),
        ),
        (
            "aio_pika.tools",
            "Callback %r error: %s: %s",
            ("<bound method RobustChannel._on_close>", "ChannelInvalidStateError", "closed"),
        ),
    ],
)
def test_other_routine_reconnect_noise_is_a_warning(
    lines: io.StringIO, logger_name: str, template: str, args: tuple[str, ...]
) -> None:
    logger = logging.getLogger(logger_name)
    handler = logging.getLogger("millrace.test.redaction").handlers[0]
    logger.addHandler(handler)
    try:
        logger.error(template, *args)
        logger.error("Callback %r error: %s: %s", "cb", "KeyError", "x")  # not routine
    finally:
        logger.removeHandler(handler)
    assert [r["level"] for r in records(lines)] == ["WARNING", "ERROR"]
