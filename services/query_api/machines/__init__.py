"""The machine registry over HTTP (list, create, read, update, delete) and every machine's live
status, each limited to the caller's factories (:mod:`services.query_api.scope`)."""
