"""Alerts over HTTP: rules (create, change, delete), alerts (list, filter, acknowledge, clear).

Permissions: ``read:alerts`` and ``ack:alerts`` (Operator and up), ``write:alert_rules``
(Supervisor and up), ``delete:alert_rules`` (Management). Every change is written to the audit
log in the transaction that makes it, and announced on the ``telemetry`` exchange (the live
stream and the alerter's notifications pick it up).
"""
