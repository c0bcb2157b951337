"""Sensor data over HTTP: one machine's history and per-machine summaries over a location, each
limited to the caller's factories (:mod:`services.query_api.scope`)."""
