"""The cloud job's Python function (``FleetFunction``): drift and retraining triggers over the
sampled readings, the model updates and the fleet statistics' ``rate`` rows.

Built lazily by :func:`fleet_function` (pyflink is imported only inside the job), run by
:mod:`edgestream.cloud.job`. The rows it gets: ``src`` is the input's index in ``topics`` (or
one of the marker values below), with its Kafka ``partition`` and ``offset`` and raw bytes.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import Any

from edgestream.core.exceptions import SerdeError

__all__ = ["META_TIMES", "OWN", "STATS_END", "STATS_ROW", "TICK_MS", "TICK_SRC", "fleet_function"]

log = logging.getLogger("edgestream.cloud")

TICK_MS = 1000  # processing time moves idle watermarks once a second
TICK_SRC = -1  # the ``src`` of the heartbeat rows of an unbounded run
#: the ``src`` of the Python function's rows from the fleet statistics: a ``rate`` row (the
#: anomaly-rate fields of a ``device_type`` row at its window's first firing), and the
#: statistics' end of a bounded run (its ``meta``)
STATS_ROW, STATS_END = 4, 5
OWN = (2, 3)  # the inputs the Python function reads itself: samples, models (0, 1: Java)
#: the timing keys of a run's ``meta`` (the rest are counts); the statistics' own are under
#: ``fleet_stats`` (their records, span, decode, engine, garbage collection and CPU time, and
#: ``[records, ms]`` at each tenth of the run)
META_TIMES = ("records", "span_ms", "decode_ms", "engine_ms", "gc_ms", "cpu_ms", "progress")


# long: the UDF class is defined inside (pyflink is imported only in the job); its methods
# are short
def fleet_function(
    topology_dict: dict[str, Any],
    source: str | None,
    registry: str,
    topics: list[str],
    partitions: dict[str, list[int]],
    retrain_header: bytes,
    ends: dict[str, dict[int, int]] | None = None,
    stats_end: bool = False,
) -> Any:
    """The job's Python function (built lazily: pyflink imports only inside the job).

    A vectorized (pandas) scalar function: Flink hands it Arrow batches of input rows
    (``src``, ``partition``, ``offset``, raw bytes), one crossing per batch instead of one per
    record (measured: a no-op went from 27k to 131k records/s). The one instance holds the
    engine across batches and runs the rows one by one in order; for each input row it
    returns the output rows produced at that row (usually none) as parallel arrays, which SQL
    flattens (:data:`OUT_SQL`). Processing time moves on each row (and on the heartbeat rows
    of an unbounded run, ``src == TICK_SRC``); a bounded run ends when every partition
    delivered its record at ``end - 1`` (exact ends: from delivery reports or fetches) and,
    with ``stats_end``, the fleet statistics ended (``src == STATS_END``).
    """
    from pyflink.table.udf import ScalarFunction

    class FleetFunction(ScalarFunction):
        def open(self, function_context: Any) -> None:
            from fastavro import schemaless_writer

            from edgestream.cloud.engine import FleetEngine
            from edgestream.core.avro_schema import fastavro_schema, load_schema
            from edgestream.core.serde import AvroDeserializer
            from edgestream.core.topology import Topology

            topology = Topology.model_validate(topology_dict).with_source(source)
            self.engine = FleetEngine(topology)
            now = int(time.time() * 1000)
            for topic, parts in partitions.items():
                self.engine.assign(topic, parts, now)
            self.decode = AvroDeserializer(registry)
            self.topics = topics
            self.writer = schemaless_writer
            self.retrain_schema = fastavro_schema(load_schema("RetrainRequest"))
            self.next_tick = now + TICK_MS
            self.first_ms = self.last_ms = 0
            self.records = 0
            self.decode_ns = self.engine_ns = 0  # time in Avro decoding and in the engine
            # a bounded run: the last offset of each (input, partition) still to come
            self.pending = None
            if ends is not None:
                self.pending = {(i, p): end - 1 for i, t in enumerate(topics) if i in OWN
                                for p, end in (ends.get(t) or {}).items() if end > 0}  # fmt: skip
                if stats_end:
                    self.pending[(STATS_END, 0)] = 0
            self.stats_meta: dict[str, Any] = {}  # the statistics' counts, at their end

        def is_deterministic(self) -> bool:
            return False  # state across calls: never folded, deduplicated or reordered

        def eval(self, src: Any, partition: Any, offset: Any, data: Any) -> Any:
            """One Arrow batch: per input row, the rows it produced, as parallel arrays."""
            import pandas as pd

            kinds, ks, vs, hs, idx = [], [], [], [], []
            rows = zip(
                src.tolist(), partition.tolist(), offset.tolist(), data.tolist(), strict=True
            )
            none: list[Any] = []  # the usual answer: no output at this row (never mutated)
            for row in rows:
                out = list(self._row(*row))
                if not out:
                    for column in (kinds, ks, vs, hs, idx):
                        column.append(none)
                    continue
                kinds.append([o[0] for o in out])
                ks.append([o[1] for o in out])
                vs.append([o[2] for o in out])
                hs.append([o[3] for o in out])
                idx.append(list(range(1, len(out) + 1)))
            return pd.DataFrame({"kinds": kinds, "ks": ks, "vs": vs, "hs": hs, "idx": idx})

        def _row(self, src: int, partition: int, offset: int, data: Any):
            now = int(time.time() * 1000)
            if now >= self.next_tick:
                self.next_tick = now + TICK_MS
                yield from self._emit(self.engine.tick(now))
            if src == TICK_SRC:
                return
            if not self.records:
                self.first_ms = now
            self.records += 1
            self.last_ms = now
            yield from self._one(src, partition, offset, data, now)
            pending = self.pending
            last = None if pending is None else pending.get((src, partition))
            if last is not None and last <= offset:
                del pending[(src, partition)]
                if not pending:
                    yield from self._end(now)

        def _emit(self, outputs: list[Any]):
            import io

            for kind, key, value in outputs:
                if kind == "stats":
                    body = json.dumps(value, separators=(",", ":")).encode()
                    yield kind, key.encode(), body, None
                else:
                    buf = io.BytesIO()
                    buf.write(retrain_header)
                    self.writer(buf, self.retrain_schema, value)
                    yield kind, key.encode(), buf.getvalue(), None

        def _dead(self, src: int, partition: int, offset: int, data: Any, reason: str,
                  detail: str) -> Any:  # fmt: skip
            """A record the job cannot use: counted, and to the DLQ with its position."""
            topic = self.topics[src]
            counts = self.engine.counts
            if counts["dlq"] < 10:
                log.warning("%s[%d]@%d to the DLQ: %s", topic, partition, offset, detail)
            counts["dlq"] += 1
            counts[f"dlq_{reason}"] += 1
            headers = {"reason": reason, "detail": detail[:1000], "topic": topic,
                       "partition": str(partition), "offset": str(offset)}  # fmt: skip
            key = f"{topic}|{partition}|{offset}".encode()
            return "dlq", key, b"" if data is None else bytes(data), json.dumps(headers)

        def _one(self, src: int, partition: int, offset: int, data: Any, now: int):
            if src == STATS_ROW:
                yield from self._emit(self.engine.stats_row(json.loads(bytes(data)), now))
                return
            if src == STATS_END:
                self.stats_meta = json.loads(bytes(data))
                return
            clock = time.perf_counter_ns
            t0 = clock()
            try:
                record = self.decode(b"" if data is None else bytes(data))
            except SerdeError as error:  # garbage, unknown schema id, wrong magic byte
                yield self._dead(src, partition, offset, data, error.reason, str(error))
                return
            t1 = clock()
            self.decode_ns += t1 - t0
            try:
                outputs = self.engine.process(self.topics[src], partition, offset, record, now)
                self.engine_ns += clock() - t1
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                # decodable, but not a record of this topic (another schema written to it)
                detail = f"not a record of {self.topics[src]}: {type(error).__name__}: {error}"
                yield self._dead(src, partition, offset, data, "invalid_record", detail)
                return
            if outputs:
                yield from self._emit(outputs)

        def _end(self, now: int):
            """The end of a bounded input: every window closes; the run's counts."""
            log.info("end of input after %d records", self.records)
            yield from self._emit(self.engine.flush(now))
            span = max(self.last_ms - self.first_ms, 1)
            fleet = self.stats_meta
            counts = Counter({k: v for k, v in fleet.items() if k not in META_TIMES})
            counts.update(self.engine.counts)
            meta = {"records": self.records, "span_ms": span, **counts,
                    "decode_ms": self.decode_ns // 1_000_000,
                    "engine_ms": self.engine_ns // 1_000_000,
                    "fleet_stats": {k: fleet[k] for k in META_TIMES if k in fleet}}  # fmt: skip
            yield "meta", b"meta", json.dumps(meta).encode(), None

    return FleetFunction()
