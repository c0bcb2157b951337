"""JSON logging, configured once per process in its entry point.

Every record carries the service name, an ISO-8601 UTC time and, when one is in scope, the
request or message id (set through :data:`request_id` by the HTTP middleware or the consumer).
Every finished line passes through :func:`shared.redact.redact`: no token, password, client
secret, signing key or connection-string password reaches a log, whether it sits in a message,
an extra field or the text of an exception.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

from shared.redact import redact

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Records that libraries log as ERROR for events the services survive by design: the robust
# AMQP connection reconnects on its own, forever, and the service's /ready says so meanwhile.
# An operator sees them as WARNING; ERROR stays for what needs a person.
_ROUTINE_ERRORS: dict[str, tuple[tuple[str, str], ...]] = {
    # logger: (start of the message template, text the formatted message must contain)
    "aio_pika.robust_connection": (("Reconnect attempt failed", ""),),
    "aiormq.connection": (
        ("Unexpected connection close", ""),
        ("error when creating transport", "Connection refused"),
    ),
    # A robust channel's close callback finds the channel already gone with its connection.
    "aio_pika.tools": (("Callback %r error", "ChannelInvalidStateError"),),
}


def _routine(record: logging.LogRecord) -> bool:
    rules = _ROUTINE_ERRORS.get(record.name)
    if not rules or record.levelno != logging.ERROR or not isinstance(record.msg, str):
        return False
    return any(
        record.msg.startswith(start) and (not needle or needle in record.getMessage())
        for start, needle in rules
    )


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        rid = request_id.get()
        if rid is not None and not hasattr(record, "request_id"):
            record.request_id = rid
        if _routine(record):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class RedactingJsonFormatter(JsonFormatter):
    """JSON lines with UTC ISO-8601 times, secrets redacted from the whole finished line."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def json_formatter() -> logging.Formatter:
    return RedactingJsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        timestamp=False,
    )


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter(service))
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter at INFO drowns what operators need; keep their warnings.
    for noisy in ("aio_pika", "aiormq", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
