"""Plain-text logging for the command-line tools (the services log JSON, see ``shared.log``)."""

from __future__ import annotations

import logging
import sys

NOISY = ("httpx", "httpcore", "aiormq", "aio_pika")


def configure(
    verbose: bool = False, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s"
) -> None:
    """INFO (DEBUG when ``verbose``) to stderr; the client libraries only from WARNING up."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format=fmt, stream=sys.stderr
    )
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
