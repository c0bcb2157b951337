"""Every Redis key two processes agree on, built in one place.

The writer stores a machine's status and bumps its data version; the query API (and the
alerter) read them; the machine cache is shared by every door. A key's shape changes here or
nowhere.
"""

from __future__ import annotations


def status_key(machine_id: str) -> str:
    """Hash: newest reading of the machine (written by the writer, read by the status API)."""
    return f"millrace:status:{machine_id}"


def version_key(machine_id: str) -> str:
    """Counter bumped by the writer after every stored batch; part of history cache keys."""
    return f"millrace:machine:{machine_id}:version"


def machine_key(machine_id: str) -> str:
    """A cached machine-registry row (or its absence)."""
    return f"millrace:machine:{machine_id}"


def history_key(machine_id: str, version: str, digest: str) -> str:
    """A cached history answer for one data version of the machine."""
    return f"millrace:history:{machine_id}:{version}:{digest}"
