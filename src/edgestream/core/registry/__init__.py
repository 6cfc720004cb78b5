"""The embedded schema registry: Confluent's REST API subset for Avro, durable in SQLite.

Any Confluent-compatible registry URL works for edgestream; this one is the embedded
default. ``python -m edgestream.core.registry --db PATH --port N`` runs it in the foreground.
"""

from __future__ import annotations

from edgestream.core.registry.errors import ApiError
from edgestream.core.registry.server import RegistryServer, main
from edgestream.core.registry.store import RegistryStore

__all__ = ["ApiError", "RegistryServer", "RegistryStore", "main"]
