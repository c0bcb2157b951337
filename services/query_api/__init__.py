"""Query API: sensor history from InfluxDB and the machine registry, for dashboards."""
