"""MQTT ingest: Mosquitto → validate → RabbitMQ (confirmed) → only then PUBACK to Mosquitto."""
