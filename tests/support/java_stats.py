"""The fleet statistics in Java (``io.edgestream.flink.FleetAnalytics``) run outside Flink:
records encoded as the cloud topics carry them (Confluent-framed Avro, a real registry), fed
to ``FleetAnalytics.main`` in one JVM, its outputs read back."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from typing import Any

from edgestream.cloud.function import META_TIMES
from edgestream.cloud.job import CloudJobConfig, _stats_config, _topics
from edgestream.cloud.jvm import java, java_classpath
from edgestream.core.serde import AvroSerializer, subject_for
from edgestream.core.topology import Topology

SCHEMAS = {0: "WindowSummary", 1: "AnomalyAlert"}


def run_stats(
    topology: Topology,
    registry: str,
    records: list[tuple[str, int, Any]],
    now_step: int = 0,
    partitions: dict[str, list[int]] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[tuple[int, str, str], dict[str, Any]], Counter[str], list[dict[str, Any]]]:
    """Feed ``(topic, partition, record)`` in order (a record: a dict, encoded here, or raw
    bytes) as one bounded run; the last row per key, the run's counts and every output.
    ``extra``: more configuration keys (``FleetAnalytics``'s optional ones)."""
    topics = _topics(topology)
    encoders = {i: AvroSerializer(registry, name, subject_for(topics[i]))
                for i, name in SCHEMAS.items()}  # fmt: skip
    offsets: dict[tuple[int, int], int] = {}
    lines, now = [], 1_000
    for topic, partition, record in records:
        src = topics.index(topic)
        offset = offsets.get((src, partition), 0)
        offsets[(src, partition)] = offset + 1
        now += now_step
        value = record if isinstance(record, bytes) else encoders[src](record)
        lines.append(f"{src} {partition} {offset} {now} {value.hex() or '-'}")
    ends = {topics[s]: {} for s in SCHEMAS}
    for (src, partition), end in offsets.items():
        ends[topics[src]][partition] = end
    parts = partitions or {t: sorted(e) for t, e in ends.items()}
    config = _stats_config(CloudJobConfig(topology, "", registry, ends=ends), topics, parts)
    if extra:
        config = json.dumps({**json.loads(config), **extra})
    done = subprocess.run(
        [java(), "-cp", java_classpath(), "io.edgestream.flink.FleetAnalytics", config],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    outs = [json.loads(line) for line in done.stdout.splitlines()]
    rows = {}
    for out in outs:
        if out["kind"] == "stats":
            row = json.loads(out["value"])
            rows[(row["window_start"], row["scope"], row["scope_key"])] = row
    metas = [json.loads(o["value"]) for o in outs if o["kind"] == "meta"]
    assert len(metas) == 1, "a bounded run ends with one meta row"
    counts = Counter({k: v for k, v in metas[0].items() if k not in META_TIMES})
    return rows, counts, outs
