"""Helpers of the rollout integration tests: produce model updates, read rollout events."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from edgestream.core.broker import ensure_topics, producer_config
from edgestream.core.serde import AvroDeserializer, AvroSerializer, subject_for
from tests.support import gateway as gr
from tests.support.candidates import PUMP

SHADOW = {"min_readings": 300, "max_anomaly_rate_delta": 0.02, "min_rank_correlation": 0.8,
          "max_duration": "3m"}  # fmt: skip


def rollout_topology(path: Path, public_key: Path, gateways: list[dict[str, Any]] | None = None,
                     gateway: str = "gw-test") -> Path:  # fmt: skip
    """The edge test topology with small shadow gates and our public key."""
    overrides: dict[str, Any] = {
        "rollout": {"shadow": SHADOW},
        "retraining": {"signing": {"public_key_file": str(public_key)}},
    }
    if gateways is not None:
        overrides["gateways"] = gateways
    return gr.write_topology(path, gateway, **overrides)


def produce(bootstrap: str, registry: str, topic: str, updates: list[dict[str, Any]]) -> None:
    """ModelUpdate records, in order, keyed by model name (subject of ``fleet.models``: the
    forwarder's copy on ``edge.models`` carries the cloud's schema id)."""
    ensure_topics(bootstrap, {topic: 1})  # brokers do not auto-create topics
    ser = AvroSerializer(registry, "ModelUpdate", subject_for("fleet.models"))
    producer = Producer(producer_config(bootstrap, **{"acks": "all", "linger.ms": 0}))
    errors: list[Any] = []
    for u in updates:
        producer.produce(topic, ser(u), u["model_name"].encode(),
                         on_delivery=lambda e, m: errors.append(e) if e else None)  # fmt: skip
    assert producer.flush(30) == 0 and not errors, errors


def events(bootstrap: str, registry: str, topic: str = "edge.rollout") -> list[dict[str, Any]]:
    decode = AvroDeserializer(registry)
    return [decode(m.value()) for m in gr.read_topic(bootstrap, topic, settle=0.5)]


def wait_event(bootstrap: str, registry: str, pred: Any, timeout: float, worker: Any = None,
               topic: str = "edge.rollout") -> list[dict[str, Any]]:  # fmt: skip
    """Rollout events until one satisfies ``pred`` (AssertionError with them all if not)."""
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        got = events(bootstrap, registry, topic)
        if any(pred(e) for e in got):
            return got
        if worker is not None and not worker.alive():
            raise AssertionError(f"worker died:\n{worker.log_text()[-3000:]}")
        time.sleep(0.5)
    brief = [(e["gateway_id"], e["event"], e["version"], e["reason"]) for e in got]
    raise AssertionError(f"no matching rollout event within {timeout} s; got {brief}")


def versions_in_order(summaries: list[dict[str, Any]], device: str) -> list[str]:
    """model_version of the 10 s device-scope summaries of ``device``, by window start."""
    rows = sorted(
        (s["window_start"], s["model_version"])
        for s in summaries
        if s["scope"] == "device" and s["scope_key"] == device
        and s["window_end"] - s["window_start"] == 10_000
    )  # fmt: skip
    return [v for _, v in rows]


def one_switch(versions: list[str], old: str = PUMP.version, new: str = "") -> bool:
    """``old... [mixed] new...``: the version switches at one point (a 10 s window that
    straddles the swap says ``mixed``)."""
    i = 0
    while i < len(versions) and versions[i] == old:
        i += 1
    if i < len(versions) and versions[i] == "mixed":
        i += 1
    rest = versions[i:]
    return bool(rest) and all(v == new for v in rest) and i > 0
