"""Provision InfluxDB 2.x for Millrace's v1-API code path: one bucket per tier, DBRP mappings.

The services talk to every InfluxDB generation through ``/write`` and ``/query`` with
``db=INFLUX_DATABASE&rp=<tier>`` (CONTRACT §2). On 1.x they create the database and retention
policies themselves; 2.x has buckets instead, so compose runs this once (service
``influx-provision``) with the operator token: it creates the buckets ``<database>/<rp>`` with the
tier's retention and maps each (database, rp) to its bucket, the raw tier being the default.

Idempotent: a bucket or mapping that already exists is left as it is. A retention that differs
from the setting is reported, not changed: shortening retention deletes data, so that stays an
operator's decision (``influx bucket update``).

Usage: ``python -m infra.influxdb.provision_v2`` with INFLUX_URL, INFLUX_TOKEN, INFLUX_ORG,
INFLUX_DATABASE and optionally INFLUX_{RAW,HOURLY,DAILY}_{RP,RETENTION} and LOG_LEVEL.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import urllib3
from influxdb_client import BucketRetentionRules, DBRPCreate, DBRPsService, InfluxDBClient
from influxdb_client.client.bucket_api import BucketsApi
from influxdb_client.domain.bucket import Bucket
from influxdb_client.rest import ApiException
from pydantic import Field
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from shared.log import configure_logging
from shared.settings import InfluxSettings

log = logging.getLogger(__name__)

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(?:\d+[smhdw])+")
# InfluxDB 2.x refuses bucket retention periods under one hour (as 1.x does for RPs).
MIN_RETENTION_S = 3600


class ProvisionSettings(InfluxSettings):
    """The services' InfluxDB settings plus the 2.x organisation (``INFLUX_ORG``)."""

    org: str = "millrace"
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")


@dataclass(frozen=True, slots=True)
class Tier:
    rp: str
    bucket: str
    retention_s: int  # 0: keep forever
    default: bool


def parse_duration(text: str) -> int:
    """InfluxQL duration (``52w``, ``1d12h``, ``INF``) to whole seconds; 0 means infinite."""
    value = text.strip().lower()
    if value in ("inf", "0"):
        return 0
    if not _DURATION.fullmatch(value):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 52w, 30d, 36h, 1d12h or INF")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in re.findall(r"(\d+)([smhdw])", value))
    if seconds < MIN_RETENTION_S:
        raise ValueError(f"retention {text!r} is shorter than InfluxDB's minimum of 1h")
    return seconds


def bucket_name(database: str, rp: str) -> str:
    # "<db>/<rp>" is the name InfluxDB's own 1.x upgrade gives such buckets.
    return f"{database}/{rp}"


def plan(settings: InfluxSettings) -> list[Tier]:
    """The three tiers, raw first (it becomes the database's default retention policy)."""
    tiers = [
        (settings.raw_rp, settings.raw_retention, True),
        (settings.hourly_rp, settings.hourly_retention, False),
        (settings.daily_rp, settings.daily_retention, False),
    ]
    return [
        Tier(rp, bucket_name(settings.database, rp), parse_duration(retention), default)
        for rp, retention, default in tiers
    ]


def retention_of(bucket: Bucket) -> int:
    for rule in bucket.retention_rules or []:
        if rule.type == "expire":
            return int(rule.every_seconds or 0)
    return 0


def _not_found_is_empty(exc: ApiException) -> None:
    """Some 2.x lookups answer 404 instead of an empty list; anything else is an error."""
    if exc.status != 404:
        raise exc


def _org_id(client: InfluxDBClient, org: str) -> str:
    try:
        orgs = client.organizations_api().find_organizations(org=org)
    except ApiException as e:
        _not_found_is_empty(e)
        orgs = []
    if not orgs:
        raise SystemExit(f"InfluxDB organization {org!r} not found: INFLUX_ORG must match setup")
    return str(orgs[0].id)


def ensure_bucket(buckets: BucketsApi, org_id: str, tier: Tier) -> Bucket:
    try:
        found = buckets.find_buckets(name=tier.bucket, org_id=org_id).buckets or []
    except ApiException as e:
        _not_found_is_empty(e)
        found = []
    if found:
        bucket: Bucket = found[0]
        current = retention_of(bucket)
        if current != tier.retention_s:
            log.warning(
                "bucket %s exists with retention %ss, setting says %ss: left unchanged",
                tier.bucket,
                current,
                tier.retention_s,
            )
        else:
            log.info("bucket %s exists", tier.bucket)
        return bucket
    rules = (
        [BucketRetentionRules(type="expire", every_seconds=tier.retention_s)]
        if tier.retention_s
        else []
    )
    created: Bucket = buckets.create_bucket(
        bucket_name=tier.bucket,
        retention_rules=rules,
        description=f"Millrace {tier.rp} tier",
        org=org_id,
    )
    log.info("bucket %s created, retention %ss", tier.bucket, tier.retention_s)
    return created


def ensure_dbrp(
    dbrps: DBRPsService, org_id: str, bucket_id: str, database: str, tier: Tier
) -> None:
    # Virtual mappings (derived by 2.x from "db/rp" bucket names) are read-only and never the
    # default; an explicit mapping overrides them, so only explicit ones count as existing.
    existing = dbrps.get_dbr_ps(org_id=org_id, db=database, rp=tier.rp).content or []
    explicit = [m for m in existing if not m.virtual]
    if explicit:
        if explicit[0].bucket_id != bucket_id:
            log.warning(
                "DBRP %s/%s maps to bucket %s, not %s: left unchanged",
                database,
                tier.rp,
                explicit[0].bucket_id,
                tier.bucket,
            )
        else:
            log.info("DBRP %s/%s exists", database, tier.rp)
        return
    dbrps.post_dbrp(
        DBRPCreate(
            org_id=org_id,
            bucket_id=bucket_id,
            database=database,
            retention_policy=tier.rp,
            default=tier.default,
        )
    )
    log.info("DBRP %s/%s -> %s created (default=%s)", database, tier.rp, tier.bucket, tier.default)


def provision(client: InfluxDBClient, settings: ProvisionSettings, tiers: list[Tier]) -> None:
    org_id = _org_id(client, settings.org)
    buckets = client.buckets_api()
    dbrps = DBRPsService(client.api_client)
    for tier in tiers:
        bucket = ensure_bucket(buckets, org_id, tier)
        ensure_dbrp(dbrps, org_id, str(bucket.id), settings.database, tier)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status is None or exc.status >= 500
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError)


def main() -> None:
    settings = ProvisionSettings()
    configure_logging("influx_provision", settings.log_level)
    if settings.token is None:
        raise SystemExit("INFLUX_TOKEN (an operator or all-access token) is required")
    tiers = plan(settings)  # a bad retention setting fails here, before any request
    retrying = Retrying(
        stop=stop_after_delay(120),
        wait=wait_exponential(multiplier=0.5, max=10),
        retry=retry_if_exception(_transient),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    with InfluxDBClient(
        url=settings.url,
        token=settings.token.get_secret_value(),
        org=settings.org,
        timeout=int(settings.timeout_s * 1000),
    ) as client:
        retrying(provision, client, settings, tiers)
    log.info("InfluxDB provisioned: database %s, tiers %s", settings.database, tiers)


if __name__ == "__main__":
    main()
