"""Helpers of the retraining tests: a topology with run-time keys, fleet samples on a broker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgestream.core.paths import topologies_dir
from edgestream.ml.artifact import MODELS_DIR
from edgestream.ml.data import simulate_readings
from edgestream.ml.signing import generate_key_pair
from edgestream.sim.config import SimConfig

START = 1_718_000_000_000
EVERY = 10  # forwarding.samples.every: a reading is sampled iff seq % EVERY == 0


def topology_with_keys(tmp: Path) -> tuple[Path, Path, Path]:
    """The default topology in ``tmp`` with model paths absolute and a fresh key pair.

    Returns (topology path, private key path, public key path).
    """
    private, public = generate_key_pair(tmp / "keys")
    text = (topologies_dir() / "default.yaml").read_text()
    text = text.replace("../src/edgestream/ml/models", str(MODELS_DIR))
    text += f"\nretraining:\n  signing: {{key_file: {private}, public_key_file: {public}}}\n"
    path = tmp / "topology.yaml"
    path.write_text(text)
    return path, private, public


def sampled_readings(
    device_type: str, devices: int, duration: float, seed: int, prefix: str
) -> list[dict[str, Any]]:
    """Simulated SensorReadings of one type as a gateway samples them (seq % EVERY == 0)."""
    cfg = SimConfig(
        devices=devices,
        rate=10.0,
        duration=duration,
        seed=seed,
        start_time=START,
        labels=None,
        device_types=(device_type,),
    )
    sim = simulate_readings(cfg, device_type)
    out = []
    seq: dict[str, int] = {}
    for i in range(len(sim.ts)):
        device = f"{prefix}{sim.device_ids[i]}"
        n = seq.get(device, 0)
        seq[device] = n + 1
        if n % EVERY:
            continue
        out.append(
            {
                "device_id": device,
                "site": "site-1",
                "device_type": device_type,
                "ts": int(sim.ts[i]),
                "seq": n,
                "channels": {c: float(v) for c, v in zip(sim.channels, sim.values[i], strict=True)},
                "tags": {"gateway_id": "gw-1", "model_version": "v1"},
            }
        )
    return out


@dataclass
class Produced:
    """Where each produced record landed: (partition, offset, record)."""

    rows: list[tuple[int, int, dict[str, Any]]]


def produce(
    bootstrap: str, registry: str, topic: str, schema: str, records: list[dict], key: str
) -> Produced:
    """Produce Avro records (key = ``record[key]``), one at a time in order; their offsets."""
    from confluent_kafka import Producer

    from edgestream.core.broker import ensure_topics, producer_config
    from edgestream.core.serde import AvroSerializer, subject_for

    ensure_topics(bootstrap, {topic: 2})
    encode = AvroSerializer(registry, schema, subject_for(topic))
    producer = Producer(producer_config(bootstrap))
    rows: list[tuple[int, int, dict[str, Any]]] = []

    def done(error: Any, msg: Any, record: dict[str, Any]) -> None:
        assert error is None, error
        rows.append((msg.partition(), msg.offset(), record))

    for record in records:
        k = str(record[key]).encode()
        producer.produce(
            topic, key=k, value=encode(record), on_delivery=lambda e, m, r=record: done(e, m, r)
        )
    assert producer.flush(30) == 0
    return Produced(rows)


def retrain_request(
    model_name: str, version: str, pointer: list[dict[str, Any]], dedup_key: str
) -> dict[str, Any]:
    """A RetrainRequest CloudEvent (the drift job's shape)."""
    return {
        "specversion": "1.0",
        "id": dedup_key,
        "source": "/edgestream/tests",
        "type": "io.edgestream.retrain.requested",
        "time": START,
        "subject": model_name,
        "datacontenttype": "application/avro",
        "data": {
            "model_name": model_name,
            "model_version": version,
            "model_sha256": None,
            "dedup_key": dedup_key,
            "reason": "drift",
            "severity": "major",
            "scope": "device_type",
            "scope_key": "reefer",
            "window_start": START,
            "window_end": START + 300_000,
            "features": [],
            "data_pointer": pointer,
        },
    }


def reading_id(record: dict[str, Any]) -> str:
    return f"{record['device_id']}|{record['seq']}"
