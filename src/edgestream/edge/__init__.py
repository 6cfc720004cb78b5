"""Edge gateway: validation, inference, event-time windows and their durable state."""
