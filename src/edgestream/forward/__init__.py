"""The forwarder: edge outbox -> cloud Kafka, exactly once by record id."""
