"""Writer pool: competing consumers that batch readings into InfluxDB and ack only after."""
