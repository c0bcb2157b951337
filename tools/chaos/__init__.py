"""Chaos harness: a known set of readings over HTTP and MQTT while the pipeline is broken on
a schedule, then a count in InfluxDB of what was lost or stored twice.

``python -m tools.chaos --help``; ``make chaos``; see ``docs/chaos.md``.
"""
