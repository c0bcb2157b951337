"""Back up and restore Millrace's two stores of record.

    python -m tools.backup backup  DIR      # PostgreSQL dump + InfluxDB portable backup into DIR
    python -m tools.backup restore DIR      # into EMPTY targets (a new database, a fresh server)
    python -m tools.backup verify  DIR      # the files are there and readable

PostgreSQL: ``pg_dump --format=custom`` of the whole application database (registry, users,
gateway credentials, sessions, config, audit, dead-letter archive, alerts, schema_migrations),
restored with ``pg_restore --single-transaction`` into an empty database. InfluxDB 1.x: every
retention policy (raw, hourly, daily) of INFLUX_DATABASE through ``influxd backup -portable``
over the RPC port (INFLUX_RPC, default: INFLUX_URL's host, port 8088), restored with
``influxd restore -portable`` while the database does not exist (``--influx-database`` restores
under another name). InfluxDB 2.x is backed up with its own ``influx backup`` (docs/production.md).

Connection settings are the services' own variables (POSTGRES_URL, INFLUX_URL, INFLUX_DATABASE);
the PostgreSQL password goes to pg_dump through PGPASSWORD, never on a command line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

PG_FILE = "postgres.dump"
INFLUX_DIR = "influxdb"
MANIFEST = "manifest.json"


class BackupError(Exception):
    """A step failed; the message says which and why."""


@dataclass(frozen=True)
class Targets:
    postgres_url: str
    influx_url: str
    influx_database: str
    influx_rpc: str

    @classmethod
    def from_env(cls, args: argparse.Namespace) -> Targets:
        postgres = args.postgres_url or os.environ.get("POSTGRES_URL", "")
        influx_url = os.environ.get("INFLUX_URL", "http://127.0.0.1:8086")
        database = args.influx_database or os.environ.get("INFLUX_DATABASE", "millrace")
        rpc = args.influx_rpc or os.environ.get("INFLUX_RPC") or _default_rpc(influx_url)
        if not postgres:
            raise BackupError("POSTGRES_URL is not set (or pass --postgres-url)")
        return cls(postgres, influx_url, database, rpc)


def _default_rpc(influx_url: str) -> str:
    return f"{urlsplit(influx_url).hostname or '127.0.0.1'}:8088"


def _pg_env(url: str) -> tuple[list[str], dict[str, str]]:
    """libpq connection options without the password, and an environment carrying it."""
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    args = [
        "--host",
        parts.hostname or "127.0.0.1",
        "--port",
        str(parts.port or 5432),
        "--username",
        unquote(parts.username or "postgres"),
        "--dbname",
        parts.path.lstrip("/") or "postgres",
    ]
    return args, env


def _run(command: list[str], env: dict[str, str] | None = None) -> str:
    tool = shutil.which(command[0])
    if tool is None:
        raise BackupError(f"{command[0]} is not installed")
    done = subprocess.run([tool, *command[1:]], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout + done.stderr


def backup_postgres(url: str, out: Path) -> Path:
    conn, env = _pg_env(url)
    target = out / PG_FILE
    _run(["pg_dump", *conn, "--format=custom", "--no-owner", "--no-privileges",
          "--file", str(target)], env)  # fmt: skip
    return target


def restore_postgres(url: str, source: Path) -> None:
    """Into an empty database: one transaction, so a failure leaves it empty again."""
    conn, env = _pg_env(url)
    _run(["pg_restore", *conn, "--no-owner", "--no-privileges", "--single-transaction",
          "--exit-on-error", str(source / PG_FILE)], env)  # fmt: skip


def backup_influx(rpc: str, database: str, out: Path) -> Path:
    target = out / INFLUX_DIR
    target.mkdir(parents=True, exist_ok=True)
    _run(["influxd", "backup", "-portable", "-database", database, "-host", rpc, str(target)])
    if not list(target.glob("*.manifest")):
        raise BackupError(f"influxd backup wrote no manifest into {target}")
    return target


def restore_influx(rpc: str, database: str, source: Path, new_database: str | None) -> None:
    command = ["influxd", "restore", "-portable", "-db", database, "-host", rpc]
    if new_database and new_database != database:
        command += ["-newdb", new_database]
    _run([*command, str(source / INFLUX_DIR)])


def verify(source: Path) -> dict[str, object]:
    manifest_file = source / MANIFEST
    if not manifest_file.exists():
        raise BackupError(f"{manifest_file} is missing: not a backup made by this tool")
    manifest: dict[str, object] = json.loads(manifest_file.read_text())
    listing = _run(["pg_restore", "--list", str(source / PG_FILE)])
    if "TABLE DATA" not in listing:
        raise BackupError(f"{source / PG_FILE} holds no table data")
    if not list((source / INFLUX_DIR).glob("*.manifest")):
        raise BackupError(f"{source / INFLUX_DIR} holds no InfluxDB backup")
    return manifest


def backup(targets: Targets, out: Path) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise BackupError(f"{out} is not empty: one backup per folder")
    started = datetime.now(UTC)
    backup_postgres(targets.postgres_url, out)
    backup_influx(targets.influx_rpc, targets.influx_database, out)
    parts = urlsplit(targets.postgres_url)
    manifest: dict[str, object] = {
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "postgres": {"database": parts.path.lstrip("/"), "host": parts.hostname, "file": PG_FILE},
        "influxdb": {"database": targets.influx_database, "folder": INFLUX_DIR},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def restore(targets: Targets, source: Path) -> None:
    manifest = verify(source)
    influx = manifest["influxdb"]
    assert isinstance(influx, dict)
    restore_postgres(targets.postgres_url, source)
    restore_influx(targets.influx_rpc, str(influx["database"]), source, targets.influx_database)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.backup", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--postgres-url", help="default: POSTGRES_URL")
    parser.add_argument(
        "--influx-database", help="default: INFLUX_DATABASE (restore: the name to create)"
    )
    parser.add_argument(
        "--influx-rpc", help="influxd's backup RPC address, default: INFLUX_URL host:8088"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backup", help="dump PostgreSQL and InfluxDB into an empty folder").add_argument(
        "dir", type=Path
    )
    sub.add_parser("restore", help="restore a backup into empty targets").add_argument(
        "dir", type=Path
    )
    sub.add_parser("verify", help="check a backup folder").add_argument("dir", type=Path)
    return parser  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "verify":
            print(json.dumps(verify(args.dir), indent=2))
            return
        targets = Targets.from_env(args)
        if args.command == "backup":
            print(json.dumps(backup(targets, args.dir), indent=2))
        else:
            restore(targets, args.dir)
            print(f"restored {args.dir}")
    except BackupError as e:
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(1) from None
