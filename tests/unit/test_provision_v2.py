"""InfluxDB 2.x provisioning: duration parsing, the tier plan, and idempotence against fakes of
influxdb-client's APIs (the real server is only in compose)."""

from __future__ import annotations

from typing import Any

import pytest
from influxdb_client import DBRP, BucketRetentionRules, DBRPCreate, DBRPs
from influxdb_client.domain.bucket import Bucket
from influxdb_client.domain.buckets import Buckets

from infra.influxdb.provision_v2 import (
    ProvisionSettings,
    Tier,
    ensure_bucket,
    ensure_dbrp,
    parse_duration,
    plan,
    retention_of,
)

WEEK = 7 * 86_400


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("52w", 52 * WEEK),
        ("104w", 104 * WEEK),
        ("260w", 260 * WEEK),
        ("30d", 30 * 86_400),
        ("1h", 3600),
        ("1d12h", 36 * 3600),
        ("2h30m", 9000),
        (" 52W ", 52 * WEEK),
        ("INF", 0),
        ("inf", 0),
        ("0", 0),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "52", "w", "52y", "-1w", "1.5d", "52w ago", "59m", "30s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def _settings(**overrides: Any) -> ProvisionSettings:
    values: dict[str, Any] = {
        "database": "millrace",
        "org": "millrace",
        "raw_rp": "raw",
        "hourly_rp": "hourly",
        "daily_rp": "daily",
        "raw_retention": "52w",
        "hourly_retention": "104w",
        "daily_retention": "260w",
    }
    values.update(overrides)
    return ProvisionSettings(**values)


def test_plan_uses_the_services_settings() -> None:
    assert plan(_settings()) == [
        Tier("raw", "millrace/raw", 52 * WEEK, True),
        Tier("hourly", "millrace/hourly", 104 * WEEK, False),
        Tier("daily", "millrace/daily", 260 * WEEK, False),
    ]


def test_plan_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUX_DATABASE", "plant7")
    monkeypatch.setenv("INFLUX_ORG", "acme")
    monkeypatch.setenv("INFLUX_HOURLY_RETENTION", "8w")
    settings = ProvisionSettings()
    assert settings.org == "acme"
    hourly = plan(settings)[1]
    assert (hourly.bucket, hourly.retention_s) == ("plant7/hourly", 8 * WEEK)


def test_plan_fails_on_a_bad_retention_before_any_request() -> None:
    with pytest.raises(ValueError, match="daily"):
        plan(_settings(daily_retention="daily"))


class FakeBuckets:
    def __init__(self, existing: list[Bucket]) -> None:
        self.existing = existing
        self.created: list[dict[str, Any]] = []

    def find_buckets(self, **kwargs: Any) -> Buckets:
        return Buckets(buckets=[b for b in self.existing if b.name == kwargs["name"]])

    def create_bucket(self, **kwargs: Any) -> Bucket:
        self.created.append(kwargs)
        return Bucket(id="0000000000000b01", name=kwargs["bucket_name"], retention_rules=[])


class FakeDbrps:
    def __init__(self, existing: list[DBRP]) -> None:
        self.existing = existing
        self.created: list[DBRPCreate] = []

    def get_dbr_ps(self, **kwargs: Any) -> DBRPs:
        found = [
            m
            for m in self.existing
            if (m.database, m.retention_policy) == (kwargs["db"], kwargs["rp"])
        ]
        return DBRPs(content=found)

    def post_dbrp(self, dbrp_create: DBRPCreate) -> None:
        self.created.append(dbrp_create)


RAW = Tier("raw", "millrace/raw", 52 * WEEK, True)


def test_missing_bucket_is_created_with_its_retention() -> None:
    buckets = FakeBuckets([])
    ensure_bucket(buckets, "00000000000000a1", RAW)  # type: ignore[arg-type]
    [call] = buckets.created
    assert call["bucket_name"] == "millrace/raw"
    assert call["org"] == "00000000000000a1"
    [rule] = call["retention_rules"]
    assert (rule.type, rule.every_seconds) == ("expire", 52 * WEEK)


def test_infinite_retention_means_no_rule() -> None:
    buckets = FakeBuckets([])
    ensure_bucket(buckets, "00000000000000a1", Tier("raw", "millrace/raw", 0, True))  # type: ignore[arg-type]
    assert buckets.created[0]["retention_rules"] == []


def test_existing_bucket_is_left_as_it_is(caplog: pytest.LogCaptureFixture) -> None:
    rule = BucketRetentionRules(type="expire", every_seconds=4 * WEEK)
    bucket = Bucket(id="0000000000000b09", name="millrace/raw", retention_rules=[rule])
    buckets = FakeBuckets([bucket])
    assert ensure_bucket(buckets, "00000000000000a1", RAW) is bucket  # type: ignore[arg-type]
    assert buckets.created == []
    assert retention_of(bucket) == 4 * WEEK
    assert "left unchanged" in caplog.text


def test_raw_mapping_is_created_as_the_default() -> None:
    dbrps = FakeDbrps([])
    ensure_dbrp(dbrps, "00000000000000a1", "0000000000000b01", "millrace", RAW)  # type: ignore[arg-type]
    [created] = dbrps.created
    assert (created.database, created.retention_policy) == ("millrace", "raw")
    assert (created.bucket_id, created.org_id, created.default) == (
        "0000000000000b01",
        "00000000000000a1",
        True,
    )


def mapping(mapping_id: str, rp: str, *, default: bool, virtual: bool) -> DBRP:
    """An existing mapping of database millrace, retention policy ``rp``, to bucket b01."""
    where = {"org_id": "o", "bucket_id": "0000000000000b01", "database": "millrace"}
    return DBRP(id=mapping_id, retention_policy=rp, default=default, virtual=virtual, **where)


def test_virtual_mapping_is_overridden_by_an_explicit_one() -> None:
    dbrps = FakeDbrps([mapping("v", "hourly", default=False, virtual=True)])
    hourly = Tier("hourly", "millrace/hourly", 104 * WEEK, False)
    ensure_dbrp(dbrps, "00000000000000a1", "0000000000000b01", "millrace", hourly)  # type: ignore[arg-type]
    assert [(m.retention_policy, m.default) for m in dbrps.created] == [("hourly", False)]


def test_existing_explicit_mapping_is_left_as_it_is() -> None:
    dbrps = FakeDbrps([mapping("m", "raw", default=True, virtual=False)])
    ensure_dbrp(dbrps, "00000000000000a1", "0000000000000b01", "millrace", RAW)  # type: ignore[arg-type]
    assert dbrps.created == []
