"""Bounded reads of the Avro topics for snapshot queries, decoded in Python before Flink.

Measured on the development machine (2 cores, load ~15 from other test runs): decoding in a
PyFlink Python operator (``thread`` mode) made a 100-record COUNT take 74 s against 18 s for
the same query on raw bytes; a table handed to Flink from pandas (Arrow) ran a GROUP BY over
10,000 rows in 3.2 s once the MiniCluster was up. So a snapshot reads each Avro topic here,
up to its exact end (fetch-based end-of-partition events: exact even on a broker whose ListOffsets
is not), decodes with the one serde path, drops forwarder replays, and gives Flink a table.
``--follow`` queries use the streaming route (Kafka source + Python decoding in Flink).
The snapshot lives in the client's memory: fine for the aggregated streams (summaries and
alerts, not raw readings).
"""

from __future__ import annotations

from edgestream.core.endpoints import CloudEndpoints

__all__ = ["read_records"]


def read_records(endpoints: CloudEndpoints, topic: str, timeout: float = 120.0) -> list[dict]:
    """Every record of ``topic`` from the beginning to its current end, decoded, replays
    dropped, in partition then offset order."""
    from edgestream.core.offsets import read_to_end
    from edgestream.core.serde import AvroDeserializer
    from edgestream.wire.dedup import Deduplicator

    messages = read_to_end(endpoints.bootstrap, topic, endpoints.client_settings, timeout)
    decode = AvroDeserializer(endpoints.registry)
    dedup = Deduplicator()
    records = []
    for msg in messages:
        record = decode(msg.value())
        if dedup.accept_record(record):
            records.append(record)
    return records
