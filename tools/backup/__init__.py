"""Backups an operator can restore: PostgreSQL (pg_dump/pg_restore) and InfluxDB 1.x
(`influxd backup -portable` / `influxd restore -portable`). See docs/production.md."""
