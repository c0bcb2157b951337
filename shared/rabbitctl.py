"""``rabbitmqctl`` aimed at the node ``AMQP_URL`` names, for tools and tests.

``make up`` reuses the machine's node on port 5672 and starts a node of its own on any other port,
named ``millrace-<port>@localhost`` (infra/local/deps.sh). A command without ``-n`` would reach
whichever node the shell's environment names, not necessarily the one Millrace uses.
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_AMQP_PORT = 5672


def node_for(amqp_url: str) -> str | None:
    """The node name for ``amqp_url``, or None for the machine's default node."""
    port = urlsplit(amqp_url).port or DEFAULT_AMQP_PORT
    return None if port == DEFAULT_AMQP_PORT else f"millrace-{port}@localhost"


def rabbitmqctl_command(amqp_url: str, *args: str) -> list[str]:
    node = node_for(amqp_url)
    return ["rabbitmqctl", *(("-n", node) if node else ()), *args]
