"""The wire contract every stage shares: topic names (:mod:`~edgestream.wire.topics`), record
ids (:mod:`~edgestream.wire.ids`), the wire forms of alerts and summaries
(:mod:`~edgestream.wire.forms`), Avro bodies and framing (:mod:`~edgestream.wire.codec`),
consumer-side dedup (:mod:`~edgestream.wire.dedup`) and event-time types
(:mod:`~edgestream.wire.window_types`, :mod:`~edgestream.wire.watermarks`).

It sits right above :mod:`edgestream.core` and below every stage: the edge writes it, the
forwarder carries it, the cloud jobs, alert subscribers and queries read it. Importing the
package imports nothing (each module is light on its own).
"""
