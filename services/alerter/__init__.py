"""Alerter: evaluates alert rules on the readings flowing through RabbitMQ, keeps the alert
lifecycle (active -> acknowledged -> cleared) in PostgreSQL and notifies (live stream, a retained
MQTT topic per machine, signed webhooks). See README "Console, live view and alerts"."""
