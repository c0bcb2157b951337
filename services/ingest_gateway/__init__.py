"""HTTP ingest: validate gateway batches and hand them to RabbitMQ, confirmed."""
