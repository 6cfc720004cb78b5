"""The declarative topology: typed, frozen models, precise errors, references, secrets."""

from __future__ import annotations

import importlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.paths import topologies_dir
from edgestream.core.topology import (
    Topology,
    TopologyError,
    format_duration,
    load_topology,
    parse_duration,
    parse_size,
)
from tests.support.deploy import EXAMPLES
from tests.support.doctests import run_doctests

# A small valid topology; the broken cases below each change one thing in it.
BASE = """\
name: test
gateways:
  - id: gw-1
    sites: [site-1]
    device_types: [pump, reefer]
    canary: true
  - id: gw-2
    sites: site-2
    device_types: [pump]
sensors:
  topics:
    - name: sensors.pump
      device_type: pump
      channels:
        vibration_rms: {unit: mm/s, min: 0, max: 50}
        bearing_temp: {unit: degC, min: -30, max: 150}
    - name: sensors.reefer
      device_type: reefer
      schema: SensorFrame
      channels:
        supply_air_temp: {unit: degC}
        door_open: {unit: bool, min: 0, max: 1}
        ambient: {unit: degC, required: false}
features:
  pump: [vibration_rms, bearing_temp]
  reefer: [supply_air_temp]
models:
  pump: {name: pump-m, path: pump.onnx, threshold: 0.6}
  reefer: {name: reefer-m, path: reefer.onnx, threshold: 0.6}
windows:
  - {size: 10s, allowed_lateness: 2s}
anomaly:
  rules:
    - name: door-aware
      device_types: [reefer]
      mute_when:
        - {channel: door_open, above: 0.5, hold: 1m}
  severity: {warning: 0.6, critical: 0.8}
forwarding:
  rollup: [10s, 1m]
  security:
    protocol: PLAINTEXT
cloud:
  jobs:
    drift: {psi_major: 0.25, psi_minor: 0.1}
retraining:
  holdout_fraction: 0.2
rollout:
  canary_fraction: 0.5
  shadow: {min_rank_correlation: 0.8}
"""

EXAMPLE_ENV = {
    "FACTORY_CLOUD_BOOTSTRAP": "kafka-1.example.com:9093,kafka-2.example.com:9093",
    "FACTORY_CLOUD_USER": "plant-forwarder",
    "FACTORY_CLOUD_PASSWORD": "factory-s3cret-value",
    "COLD_CHAIN_CLOUD_BOOTSTRAP": "kafka.example.com:9093",
    "COLD_CHAIN_CLOUD_USER": "depot-forwarder",
    "COLD_CHAIN_CLOUD_PASSWORD": "cold-s3cret-value",
}


def write(tmp_path: Path, text: str, name: str = "topology.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str, **kwargs) -> Topology:
    return load_topology(write(tmp_path, text), **{"check_files": False, **kwargs})


def problems(tmp_path: Path, text: str, **kwargs) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        load_text(tmp_path, text, **kwargs)
    return [str(p) for p in caught.value.problems]


def line_of(text: str, marker: str) -> int:
    """1-based line of the first occurrence of ``marker`` in ``text``."""
    index = text.index(marker)
    return text.count("\n", 0, index) + 1


# --- broken topologies: one change each, one precise message each ----------------------------


@dataclass(frozen=True)
class Broken:
    id: str
    old: str  # replaced (first occurrence) in BASE ...
    new: str  # ... by this
    path: str  # key path the message names
    got: str  # the offending value as shown
    expected: str  # a fragment of the "expected" part
    at: str  # the problem's line is the first line of the result containing this


CASES = [
    Broken(
        "unknown-key",
        "    canary: true",
        "    canry: true",
        "gateways[0].canry",
        "the unknown key 'canry'",
        "expected one of: id, sites, device_types, devices, bootstrap, canary; "
        "did you mean 'canary'?",
        "canry",
    ),
    Broken(
        "unknown-top-level-key",
        "retraining:",
        "retrain:",
        "retrain",
        "the unknown key 'retrain'",
        "did you mean 'retraining'?",
        "retrain:",
    ),
    Broken(
        "missing-name",
        "name: test\n",
        "version: 3\n",
        "name",
        "nothing",
        "the required key 'name'",
        "version",
    ),
    Broken(
        "missing-gateway-id",
        "  - id: gw-2\n    sites: site-2",
        "  - sites: site-2",
        "gateways[1].id",
        "nothing",
        "the required key 'id'",
        "  - sites: site-2",
    ),
    Broken(
        "partitions-not-int",
        "      device_type: pump\n",
        "      device_type: pump\n      partitions: many\n",
        "sensors.topics[0].partitions",
        "'many'",
        "an integer",
        "partitions",
    ),
    Broken(
        "partitions-bool",
        "      device_type: pump\n",
        "      device_type: pump\n      partitions: yes\n",
        "sensors.topics[0].partitions",
        "true",
        "an integer",
        "partitions",
    ),
    Broken(
        "partitions-zero",
        "      device_type: pump\n",
        "      device_type: pump\n      partitions: 0\n",
        "sensors.topics[0].partitions",
        "0",
        "an integer >= 1",
        "partitions",
    ),
    Broken(
        "bad-duration",
        "{size: 10s, allowed_lateness: 2s}",
        "{size: 10 parsecs, allowed_lateness: 2s}",
        "windows[0].size",
        "'10 parsecs'",
        "a duration such as '500ms', '10s', '1m', '2h'",
        "parsecs",
    ),
    Broken(
        "negative-lateness",
        "{size: 10s, allowed_lateness: 2s}",
        "{size: 10s, allowed_lateness: -2s}",
        "windows[0].allowed_lateness",
        "'-2s'",
        "a duration >= 0",
        "-2s",
    ),
    Broken(
        "hop-larger-than-size",
        "{size: 10s, allowed_lateness: 2s}",
        "{size: 10s, hop: 20s}",
        "windows[0].hop",
        "'20s'",
        "a hop <= size (10s)",
        "hop: 20s",
    ),
    Broken(
        "hop-not-dividing",
        "{size: 10s, allowed_lateness: 2s}",
        "{size: 10s, hop: 3s}",
        "windows[0].hop",
        "'3s'",
        "a hop that divides size 10s evenly",
        "hop: 3s",
    ),
    Broken(
        "window-scope",
        "{size: 10s, allowed_lateness: 2s}",
        "{size: 10s, scopes: [device, plant]}",
        "windows[0].scopes[1]",
        "'plant'",
        "one of: device, site",
        "plant",
    ),
    Broken(
        "topic-bad-chars",
        "    - name: sensors.pump",
        "    - name: sensors/pump",
        "sensors.topics[0].name",
        "'sensors/pump'",
        "a Kafka topic name: only letters, digits, '.', '_' and '-'",
        "sensors/pump",
    ),
    Broken(
        "topic-too-long",
        "    - name: sensors.pump",
        "    - name: " + "p" * 250,
        "sensors.topics[0].name",
        "'ppppp",
        "a Kafka topic name of at most 249 characters",
        "ppppp",
    ),
    Broken(
        "topic-duplicate",
        "    - name: sensors.reefer",
        "    - name: sensors.pump",
        "sensors.topics[1].name",
        "'sensors.pump'",
        "unique topic names (sensors.topics[0] has it too)",
        "    - name: sensors.pump\n      device_type: reefer",
    ),
    Broken(
        "topic-clashes-with-dlq",
        "    - name: sensors.reefer",
        "    - name: sensors.pump.dlq",
        "sensors.topics[1].name",
        "'sensors.pump.dlq'",
        "a name that is not the DLQ/late topic of 'sensors.pump'",
        "sensors.pump.dlq",
    ),
    Broken(
        "schema-unknown",
        "      schema: SensorFrame",
        "      schema: SensorFrames",
        "sensors.topics[1].schema",
        "'SensorFrames'",
        "one of: SensorReading, SensorFrame; did you mean 'SensorFrame'?",
        "SensorFrames",
    ),
    Broken(
        "gateway-duplicate-id",
        "  - id: gw-2",
        "  - id: gw-1",
        "gateways[1].id",
        "'gw-1'",
        "unique gateway ids (gateways[0] has it too)",
        "  - id: gw-1\n    sites: site-2",
    ),
    Broken(
        "gateway-device-type-without-topic",
        "    device_types: [pump]\n",
        "    device_types: [pump, pumps]\n",
        "gateways[1].device_types[1]",
        "'pumps'",
        "a device type with a sensor topic (sensors.topics has: pump, reefer); "
        "did you mean 'pump'?",
        "[pump, pumps]",
    ),
    Broken(
        "gateway-empty-sites",
        "    sites: site-2",
        "    sites: []",
        "gateways[1].sites",
        "[]",
        "at least 1 item",
        "sites: []",
    ),
    Broken(
        "gateway-bad-id",
        "  - id: gw-2",
        "  - id: gw 2!",
        "gateways[1].id",
        "'gw 2!'",
        "a name of letters, digits",
        "gw 2!",
    ),
    Broken(
        "no-canary-for-reefer",
        "    canary: true\n  - id: gw-2\n    sites: site-2\n    device_types: [pump]\n",
        "  - id: gw-2\n    sites: site-2\n    device_types: [pump]\n    canary: true\n",
        "gateways",
        "no canary gateway (gw-2) serving 'reefer'",
        "a canary gateway serving 'reefer' (mark one with canary: true)",
        "gateways:",
    ),
    Broken(
        "every-gateway-canary",
        "    device_types: [pump]\n",
        "    device_types: [pump]\n    canary: true\n",
        "gateways",
        "every gateway marked canary: true",
        "at least one gateway without canary: true",
        "gateways:",
    ),
    Broken(
        "channel-min-above-max",
        "vibration_rms: {unit: mm/s, min: 0, max: 50}",
        "vibration_rms: {unit: mm/s, min: 60, max: 50}",
        "sensors.topics[0].channels.vibration_rms.max",
        "50",
        "max >= min (60)",
        "min: 60",
    ),
    Broken(
        "feature-not-a-channel",
        "  pump: [vibration_rms, bearing_temp]",
        "  pump: [vibration_rms, bearing_tmp]",
        "features.pump[1]",
        "'bearing_tmp'",
        "a channel of device type 'pump' (vibration_rms, bearing_temp); "
        "did you mean 'bearing_temp'?",
        "bearing_tmp",
    ),
    Broken(
        "feature-optional-channel",
        "  reefer: [supply_air_temp]",
        "  reefer: [supply_air_temp, ambient]",
        "features.reefer[1]",
        "'ambient'",
        "a required channel (channel 'ambient' has required: false)",
        "[supply_air_temp, ambient]",
    ),
    Broken(
        "features-unknown-device-type",
        "  reefer: [supply_air_temp]",
        "  reefer: [supply_air_temp]\n  refer: [supply_air_temp]",
        "features.refer",
        "'refer'",
        "a device type with a sensor topic (pump, reefer); did you mean 'reefer'?",
        "  refer:",
    ),
    Broken(
        "model-inputs-differ-from-features",
        "  pump: {name: pump-m, path: pump.onnx, threshold: 0.6}",
        "  pump: {name: pump-m, path: pump.onnx, threshold: 0.6,"
        " inputs: [bearing_temp, vibration_rms]}",
        "models.pump.inputs",
        "['bearing_temp', 'vibration_rms']",
        "the features of 'pump' in the same order: [vibration_rms, bearing_temp]",
        "inputs:",
    ),
    Broken(
        "model-missing-for-device-type",
        "  reefer: {name: reefer-m, path: reefer.onnx, threshold: 0.6}\n",
        "",
        "models",
        "no model for 'reefer'",
        "a model for every device type the gateways serve: add models.reefer",
        "models:",
    ),
    Broken(
        "model-path-missing",
        "path: pump.onnx, threshold: 0.6}",
        "threshold: 0.6}",
        "models.pump",
        "a mapping",
        "a path to the ONNX file (or kind: online, which needs none)",
        "  pump: {name: pump-m",
    ),
    Broken(
        "model-threshold-nan",
        "path: pump.onnx, threshold: 0.6}",
        "path: pump.onnx, threshold: .nan}",
        "models.pump.threshold",
        "nan",
        "a finite number",
        "  pump: {name: pump-m",
    ),
    Broken(
        "rule-unknown-device-type",
        "      device_types: [reefer]\n      mute_when",
        "      device_types: [reefers]\n      mute_when",
        "anomaly.rules[0].device_types[0]",
        "'reefers'",
        "a device type the gateways serve (pump, reefer); did you mean 'reefer'?",
        "[reefers]",
    ),
    Broken(
        "mute-channel-unknown",
        "{channel: door_open, above: 0.5, hold: 1m}",
        "{channel: door_opn, above: 0.5, hold: 1m}",
        "anomaly.rules[0].mute_when[0].channel",
        "'door_opn'",
        "did you mean 'door_open'?",
        "door_opn",
    ),
    Broken(
        "mute-above-and-below",
        "{channel: door_open, above: 0.5, hold: 1m}",
        "{channel: door_open, above: 0.5, below: 0.2}",
        "anomaly.rules[0].mute_when[0]",
        "a mapping {channel: 'door_open', above: 0.5, below: 0.2}",
        "exactly one of above: or below:",
        "below: 0.2",
    ),
    Broken(
        "consecutive-zero",
        "      device_types: [reefer]\n",
        "      device_types: [reefer]\n      consecutive: 0\n",
        "anomaly.rules[0].consecutive",
        "0",
        "an integer >= 1",
        "consecutive",
    ),
    Broken(
        "severity-bands-inverted",
        "severity: {warning: 0.6, critical: 0.8}",
        "severity: {warning: 0.9, critical: 0.8}",
        "anomaly.severity.critical",
        "0.8",
        "critical >= warning (0.9)",
        "severity:",
    ),
    Broken(
        "compression-unknown",
        "  rollup: [10s, 1m]\n",
        "  rollup: [10s, 1m]\n  compression: zst\n",
        "forwarding.compression",
        "'zst'",
        "one of: zstd, lz4, none; did you mean 'zstd'?",
        "compression",
    ),
    Broken(
        "outbox-bad-size",
        "  rollup: [10s, 1m]\n",
        "  rollup: [10s, 1m]\n  outbox: {max_bytes: 64XB}\n",
        "forwarding.outbox.max_bytes",
        "'64XB'",
        "a size such as '512KB', '64MB', '1GiB'",
        "64XB",
    ),
    Broken(
        "outbox-fsync",
        "  rollup: [10s, 1m]\n",
        "  rollup: [10s, 1m]\n  outbox: {fsync: sometimes}\n",
        "forwarding.outbox.fsync",
        "'sometimes'",
        "one of: always, batch, never",
        "sometimes",
    ),
    Broken(
        "priorities-summaries-first",
        "  rollup: [10s, 1m]\n",
        "  rollup: [10s, 1m]\n  priorities: [summaries, alerts]\n",
        "forwarding.priorities",
        "['summaries', 'alerts']",
        "[alerts, summaries]: each kind once, alerts first",
        "priorities",
    ),
    Broken(
        "rollup-not-multiple",
        "  rollup: [10s, 1m]",
        "  rollup: [10s, 25s]",
        "forwarding.rollup[1]",
        "'25s'",
        "a multiple of the previous level 10s and larger",
        "rollup:",
    ),
    Broken(
        "rollup-misaligned-with-window",
        "{size: 10s, allowed_lateness: 2s}",
        "{size: 3s, allowed_lateness: 2s}",
        "forwarding.rollup[0]",
        "'10s'",
        "a multiple of windows[0].size 3s so roll-ups stay exact",
        "rollup:",
    ),
    Broken(
        "sasl-protocol-without-sasl",
        "    protocol: PLAINTEXT",
        "    protocol: SASL_SSL",
        "forwarding.security.sasl",
        "nothing",
        "a sasl: block (mechanism, username, password) for protocol SASL_SSL",
        "security:",
    ),
    Broken(
        "sasl-with-plaintext",
        "    protocol: PLAINTEXT",
        "    protocol: PLAINTEXT\n    sasl: {username: u, password: p}",
        "forwarding.security.sasl",
        "a mapping {username: 'u', password: **********}",
        "no sasl: block with protocol PLAINTEXT (use SASL_SSL)",
        "sasl:",
    ),
    Broken(
        "sasl-mechanism",
        "    protocol: PLAINTEXT",
        "    protocol: SASL_SSL\n    sasl: {mechanism: SCRAM-SHA-1, username: u, password: p}",
        "forwarding.security.sasl.mechanism",
        "'SCRAM-SHA-1'",
        "one of: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
        "SCRAM-SHA-1",
    ),
    Broken(
        "protocol-unknown",
        "    protocol: PLAINTEXT",
        "    protocol: TLS",
        "forwarding.security.protocol",
        "'TLS'",
        "one of: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
        "TLS",
    ),
    Broken(
        "cert-without-key",
        "    protocol: PLAINTEXT",
        "    protocol: SSL\n    cert_file: client.pem",
        "forwarding.security.key_file",
        "nothing",
        "cert_file and key_file together (mutual TLS)",
        "security:",
    ),
    Broken(
        "bootstrap-malformed",
        "  rollup: [10s, 1m]\n",
        "  rollup: [10s, 1m]\n  bootstrap: kafka.example.com\n",
        "forwarding.bootstrap",
        "'kafka.example.com'",
        "bootstrap servers as host:port[,host:port...]",
        "bootstrap",
    ),
    Broken(
        "cloud-topic-clash",
        "cloud:\n",
        "cloud:\n  stats_topic: fleet.alerts\n",
        "cloud.stats_topic",
        "'fleet.alerts'",
        "a cloud topic of its own (forwarding.topics.alerts uses it too)",
        "stats_topic",
    ),
    Broken(
        "psi-minor-above-major",
        "drift: {psi_major: 0.25, psi_minor: 0.1}",
        "drift: {psi_major: 0.25, psi_minor: 0.3}",
        "cloud.jobs.drift.psi_minor",
        "0.3",
        "0 < psi_minor < psi_major (0.25)",
        "drift:",
    ),
    Broken(
        "jobmanager-malformed",
        "cloud:\n",
        "cloud:\n  jobmanager: flink-jm\n",
        "cloud.jobmanager",
        "'flink-jm'",
        "HOST:PORT of the Flink JobManager REST endpoint",
        "jobmanager",
    ),
    Broken(
        "holdout-out-of-range",
        "  holdout_fraction: 0.2",
        "  holdout_fraction: 1.5",
        "retraining.holdout_fraction",
        "1.5",
        "a fraction between 0 and 1",
        "holdout_fraction",
    ),
    Broken(
        "holdout-one",
        "  holdout_fraction: 0.2",
        "  holdout_fraction: 1",
        "retraining.holdout_fraction",
        "1",
        "a fraction strictly between 0 and 1",
        "holdout_fraction",
    ),
    Broken(
        "trainer-unknown",
        "  holdout_fraction: 0.2",
        "  holdout_fraction: 0.2\n  trainer: random_forest",
        "retraining.trainer",
        "'random_forest'",
        "one of: isolation_forest, autoencoder",
        "random_forest",
    ),
    Broken(
        "signing-two-keys",
        "  holdout_fraction: 0.2",
        "  holdout_fraction: 0.2\n  signing: {key_file: sign.key, key_env: SIGN_KEY}",
        "retraining.signing",
        "key_file and key_env both set",
        "exactly one of key_file or key_env",
        "signing",
    ),
    Broken(
        "canary-fraction-zero",
        "  canary_fraction: 0.5",
        "  canary_fraction: 0",
        "rollout.canary_fraction",
        "0",
        "a fraction > 0 and <= 1",
        "canary_fraction",
    ),
    Broken(
        "rank-correlation-out-of-range",
        "shadow: {min_rank_correlation: 0.8}",
        "shadow: {min_rank_correlation: 2}",
        "rollout.shadow.min_rank_correlation",
        "2",
        "a correlation between -1 and 1",
        "shadow:",
    ),
    Broken(
        "registry-not-a-url",
        "name: test\n",
        "name: test\nregistry: localhost:8081\n",
        "registry",
        "'localhost:8081'",
        "an http:// or https:// URL",
        "registry",
    ),
    Broken(
        "duplicate-yaml-key",
        "name: test\n",
        "name: test\nname: other\n",
        "name",
        "the key 'name' a second time (first on line 1)",
        "each key once",
        "name: other",
    ),
    Broken(
        "sensors-not-a-mapping",
        "sensors:\n  topics:\n",
        "sensors: []\nsensors_:\n  topics:\n",
        "sensors",
        "[]",
        "a mapping of key: value",
        "sensors: []",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_topology_is_rejected_precisely(tmp_path: Path, case: Broken) -> None:
    assert case.old in BASE, f"case {case.id} does not apply to BASE"
    text = BASE.replace(case.old, case.new, 1)
    found = problems(tmp_path, text)
    file = str(tmp_path / "topology.yaml")
    matching = [p for p in found if f": {case.path}: got {case.got}" in p]
    assert matching, f"no problem for {case.path!r} with got {case.got!r} in:\n" + "\n".join(found)
    problem = matching[0]
    assert f"; expected {case.expected}" in problem or case.expected in problem, problem
    assert problem.startswith(f"{file}:{line_of(text, case.at)}: {case.path}: "), problem


def test_there_are_many_broken_cases() -> None:
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


def test_base_topology_is_valid(tmp_path: Path) -> None:
    topology = load_text(tmp_path, BASE)
    assert topology.name == "test"
    assert topology.gateways[1].sites == ("site-2",)  # a single site is accepted as a string
    assert topology.model_inputs("pump") == ("vibration_rms", "bearing_temp")
    assert topology.sensors.topics[1].required_channels == ("supply_air_temp", "door_open")
    assert topology.windows[0].size == 10_000 and topology.windows[0].tumbling
    assert topology.forwarding.outbox.max_bytes == 256_000_000
    assert topology.canary_gateways() == ("gw-1",)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = BASE.replace("    canary: true", "    canry: true").replace(
        "{size: 10s, allowed_lateness: 2s}", "{size: 10s, allowed_lateness: soon}"
    )
    found = problems(tmp_path, text)
    assert len(found) == 2
    assert "gateways[0].canry" in found[0] and "windows[0].allowed_lateness" in found[1]


def test_error_is_an_edgestream_error_with_one_problem_per_line(tmp_path: Path) -> None:
    text = BASE.replace("    canary: true", "    canry: true").replace("sites: site-2", "sites: 7")
    with pytest.raises(EdgestreamError) as caught:
        load_text(tmp_path, text)
    assert isinstance(caught.value, TopologyError)
    lines = str(caught.value).splitlines()
    assert lines == [str(p) for p in caught.value.problems] and len(lines) == 2


def test_schema_missing_from_schemas_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "schemas"
    empty.mkdir()
    shutil.copy(Path(__file__).parents[2] / "schemas" / "sensor_reading.avsc", empty)
    monkeypatch.setenv("EDGESTREAM_SCHEMAS", str(empty))
    found = problems(tmp_path, BASE)
    assert len(found) == 1
    assert f":{line_of(BASE, 'schema: SensorFrame')}: sensors.topics[1].schema: " in found[0]
    assert "got 'SensorFrame'; expected an Avro record in" in found[0]
    assert "no .avsc there declares 'SensorFrame'" in found[0]


def test_topics_of_one_device_type_must_agree_on_channels(tmp_path: Path) -> None:
    text = BASE.replace("    - name: sensors.reefer", "    - name: sensors.pump.frames").replace(
        "      device_type: reefer", "      device_type: pump"
    )
    found = problems(tmp_path, text)
    assert any(
        "sensors.topics[1].channels: got supply_air_temp, door_open, ambient; expected the "
        "channels of sensors.topics[0] (same device type 'pump')" in p
        for p in found
    ), found


# --- files, syntax, environment --------------------------------------------------------------


def test_missing_file_is_one_line() -> None:
    with pytest.raises(TopologyError) as caught:
        load_topology("nowhere/missing.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("nowhere/missing.yaml: no such topology file")


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    text = BASE.replace("    sites: [site-1]", "    sites: [site-1")
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'topology.yaml'}:5:")
    assert "invalid YAML" in found[0]


def test_yaml_bad_indentation(tmp_path: Path) -> None:
    text = BASE.replace("  topics:\n", "  topics:\n   oops: 1\n  - x\n")
    (problem,) = problems(tmp_path, text)
    line, column = problem.split(":")[1:3]
    assert line.isdigit() and column.isdigit() and "invalid YAML" in problem


@pytest.mark.parametrize(
    ("text", "got"), [("", "an empty file"), ("- a\n- b\n", "a list"), ("just text\n", "a str")]
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    (problem,) = problems(tmp_path, text)
    assert f":1: (top level): got {got}; expected a mapping" in problem


def test_missing_model_file_names_the_path(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE, check_files=True)
    assert len(found) == 2
    assert "models.pump.path: got 'pump.onnx'; expected an existing ONNX file" in found[0]
    assert f"(looked for {tmp_path / 'pump.onnx'}" in found[0]
    assert "models.reefer.path" in found[1]


def test_env_secret_is_resolved_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPO_TEST_USER", "fwd")
    monkeypatch.setenv("TOPO_TEST_PASSWORD", "sup3r-s3cret")
    monkeypatch.setenv("TOPO_TEST_BOOTSTRAP", "k1:9093")
    text = BASE.replace(
        "    protocol: PLAINTEXT",
        "    protocol: SASL_SSL\n"
        "    sasl: {mechanism: SCRAM-SHA-256, username: '${TOPO_TEST_USER}',"
        " password: '${TOPO_TEST_PASSWORD}'}",
    ).replace(
        "  rollup: [10s, 1m]", "  rollup: [10s, 1m]\n  bootstrap: ${TOPO_TEST_BOOTSTRAP},k2:9093"
    )
    topology = load_text(tmp_path, text)
    sasl = topology.forwarding.security.sasl
    assert sasl is not None and isinstance(sasl.password, SecretStr)
    assert sasl.username == "fwd"
    assert sasl.password.get_secret_value() == "sup3r-s3cret"
    assert topology.forwarding.bootstrap == "k1:9093,k2:9093"
    for shown in (repr(topology), str(topology), topology.model_dump_json(), topology.to_yaml()):
        assert "sup3r-s3cret" not in shown
    assert "${TOPO_TEST_PASSWORD}" in topology.to_yaml()  # the reference is kept, not the value
    assert "**********" in repr(sasl)


def test_literal_secret_is_masked_everywhere(tmp_path: Path) -> None:
    text = BASE.replace(
        "    protocol: PLAINTEXT",
        "    protocol: SASL_PLAINTEXT\n    sasl: {username: u, password: literal-pw-123}",
    )
    topology = load_text(tmp_path, text)
    dumped = topology.model_dump_json() + topology.to_yaml() + repr(topology) + str(topology)
    assert "literal-pw-123" not in dumped and "**********" in dumped


def test_secret_of_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    text = BASE.replace(
        "    protocol: PLAINTEXT",
        "    protocol: SASL_PLAINTEXT\n    sasl: {username: u, password: 98765432}",
    )
    (problem,) = problems(tmp_path, text)
    assert "forwarding.security.sasl.password: got **********; expected a string" in problem
    assert "98765432" not in problem


def test_missing_env_var_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOPO_TEST_ABSENT", raising=False)
    text = BASE.replace(
        "    protocol: PLAINTEXT",
        "    protocol: SASL_SSL\n    sasl: {username: u, password: '${TOPO_TEST_ABSENT}'}",
    )
    (problem,) = problems(tmp_path, text)
    assert f":{line_of(text, 'TOPO_TEST_ABSENT')}: forwarding.security.sasl.password: " in problem
    assert "got '${TOPO_TEST_ABSENT}'; expected environment variable TOPO_TEST_ABSENT" in problem


def test_env_default_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOPO_TEST_REGISTRY", raising=False)
    text = BASE.replace(
        "name: test\n", "name: test\nregistry: ${TOPO_TEST_REGISTRY:-http://r:8081/}\n"
    )
    assert load_text(tmp_path, text).registry == "http://r:8081"


def test_defer_env_keeps_unset_references_and_lists_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TOPO_TEST_CERTS", "TOPO_TEST_EDGE", "TOPO_TEST_PASSWORD", "TOPO_TEST_REG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TOPO_TEST_USER", "fwd")
    text = BASE.replace(
        "    protocol: PLAINTEXT",
        "    protocol: SASL_SSL\n    ca_file: ${TOPO_TEST_CERTS}/ca.pem\n"
        "    sasl: {username: '${TOPO_TEST_USER}', password: '${TOPO_TEST_PASSWORD}'}",
    ).replace("name: test\n", "name: test\nregistry: ${TOPO_TEST_REG:-http://r:8081}\n")
    text = text.replace("    device_types: [pump, reefer]\n", "    device_types: [pump, reefer]\n"
                        "    bootstrap: ${TOPO_TEST_EDGE}\n", 1)  # fmt: skip
    for device_type in ("pump", "reefer"):  # no model files: only the TLS file is checked
        text = text.replace(f"path: {device_type}.onnx", "kind: online")
    topology = load_text(tmp_path, text, defer_env=True, check_files=True)
    shown = [str(n) for n in topology.needed_env]
    path = tmp_path / "topology.yaml"
    assert shown == [
        f"{path}:{line_of(text, 'TOPO_TEST_EDGE')}: gateways[0].bootstrap: ${{TOPO_TEST_EDGE}}",
        f"{path}:{line_of(text, 'TOPO_TEST_CERTS')}: forwarding.security.ca_file: "
        "${TOPO_TEST_CERTS}",
        f"{path}:{line_of(text, 'TOPO_TEST_PASSWORD')}: forwarding.security.sasl.password: "
        "${TOPO_TEST_PASSWORD}",
    ]
    sasl = topology.forwarding.security.sasl
    assert sasl is not None and sasl.username == "fwd"  # what is set is resolved
    assert topology.registry == "http://r:8081"  # and defaults apply
    assert str(topology.forwarding.security.ca_file) == "${TOPO_TEST_CERTS}/ca.pem"
    found = problems(tmp_path, text, check_files=True)  # without defer_env: one way, as before
    assert len(found) == 3 and all("to be set" in p for p in found), found
    monkeypatch.setenv("TOPO_TEST_PASSWORD", "pw")
    monkeypatch.setenv("TOPO_TEST_EDGE", "e:9092")
    monkeypatch.setenv("TOPO_TEST_CERTS", str(tmp_path))
    (missing,) = problems(tmp_path, text, check_files=True)  # the file is checked once set
    assert "forwarding.security.ca_file: got" in missing and "an existing file" in missing


def test_anchors_and_extension_keys(tmp_path: Path) -> None:
    text = BASE.replace(
        "windows:\n  - {size: 10s, allowed_lateness: 2s}",
        "x-window: &w {allowed_lateness: 2s, max_out_of_orderness: 500ms}\n"
        "windows:\n  - {<<: *w, size: 10s}\n  - <<: *w\n    size: 1m\n    idle_timeout: soon",
    )
    (problem,) = problems(tmp_path, text)
    assert f":{line_of(text, 'idle_timeout: soon')}: windows[1].idle_timeout: got 'soon'" in problem
    topology = load_text(tmp_path, text.replace("idle_timeout: soon", "idle_timeout: null"))
    assert [w.max_out_of_orderness for w in topology.windows] == [500, 500]
    assert topology.windows[1].idle_timeout is None


# --- identity: frozen, fingerprint, round trip -----------------------------------------------


def test_models_are_frozen(tmp_path: Path) -> None:
    topology = load_text(tmp_path, BASE)
    with pytest.raises(ValidationError):
        topology.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        topology.windows[0].size = 1  # type: ignore[misc]
    assert isinstance(topology.gateways, tuple)


def _reordered(text: str) -> str:
    """BASE with top-level sections and the keys inside mappings in another order."""
    data = yaml.safe_load(text)
    data["gateways"] = [dict(reversed(list(g.items()))) for g in data["gateways"]]
    data["models"] = {k: dict(reversed(list(v.items()))) for k, v in data["models"].items()}
    data["windows"] = [{"allowed_lateness": "2000", "size": "10000ms"}]  # same values, in ms
    return yaml.safe_dump(dict(reversed(list(data.items()))), sort_keys=False)


def test_fingerprint_is_stable_across_key_order_and_units(tmp_path: Path) -> None:
    first = load_text(tmp_path, BASE)
    second = load_text(tmp_path, _reordered(BASE), check_files=False)
    assert first.fingerprint() == second.fingerprint()
    assert first == second
    elsewhere = tmp_path / "sub"
    elsewhere.mkdir()
    assert load_text(elsewhere, BASE).fingerprint() == first.fingerprint()
    assert len(first.fingerprint()) == 64


def test_fingerprint_changes_with_a_value(tmp_path: Path) -> None:
    first = load_text(tmp_path, BASE).fingerprint()
    changed = load_text(tmp_path, BASE.replace("allowed_lateness: 2s", "allowed_lateness: 3s"))
    assert changed.fingerprint() != first
    defaults_written = BASE.replace(
        "  rollup: [10s, 1m]", "  rollup: [10s, 1m]\n  compression: zstd"
    )
    assert load_text(tmp_path, defaults_written).fingerprint() == first


def test_yaml_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPO_TEST_PASSWORD", "pw")
    text = BASE.replace(
        "    protocol: PLAINTEXT",
        "    protocol: SASL_SSL\n    sasl: {username: u, password: '${TOPO_TEST_PASSWORD}'}",
    )
    topology = load_text(tmp_path, text)
    again = load_text(tmp_path, topology.to_yaml())
    assert again == topology
    assert again.fingerprint() == topology.fingerprint()
    assert Topology.model_validate(topology.model_dump(by_alias=True)) == topology
    assert Topology.model_validate(topology.to_dict()) == topology


# --- the examples --------------------------------------------------------------------------


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_validates_without_model_files(name: str, example_env: None) -> None:
    topology = load_topology(topologies_dir() / name, check_files=False)
    for secret in ("factory-s3cret-value", "cold-s3cret-value"):
        assert secret not in topology.model_dump_json() + repr(topology) + topology.to_yaml()
    assert topology.canary_gateways()
    assert all(model.path.name.endswith("-ae-v1.onnx") for model in topology.models.values())


def test_examples_express_the_product(example_env: None) -> None:
    factory = load_topology(topologies_dir() / "factory_vibration.yaml", check_files=False)
    assert len(factory.gateways) >= 3 and len({s for g in factory.gateways for s in g.sites}) == 2
    assert {w.size for w in factory.windows} >= {1_000, 10_000}
    assert any(rule.consecutive > 1 for rule in factory.anomaly.rules)
    assert factory.forwarding.security.protocol == "SASL_SSL"
    cold = load_topology(topologies_dir() / "cold_chain.yaml", check_files=False)
    assert {t.schema_ for t in cold.sensors.topics} == {"SensorFrame"}
    assert 60_000 in {w.size for w in cold.windows}
    muted = [m.channel for r in cold.anomaly.rules for m in r.mute_when]
    assert "door_open" in muted
    default = load_topology(topologies_dir() / "default.yaml", check_files=False)
    assert [g.id for g in default.gateways] == ["gw-1", "gw-2"]
    assert set(default.device_types) == {"pump", "reefer"}
    assert default.forwarding.bootstrap is None and default.registry is None  # embedded


def test_example_without_its_env_vars_names_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in EXAMPLE_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(TopologyError) as caught:
        load_topology(topologies_dir() / "factory_vibration.yaml", check_files=False)
    text = str(caught.value)
    for name in ("FACTORY_CLOUD_BOOTSTRAP", "FACTORY_CLOUD_USER", "FACTORY_CLOUD_PASSWORD"):
        assert f"environment variable {name} to be set" in text


# --- real ONNX models (skl2onnx IsolationForest) --------------------------------------------


def _isolation_forest(path: Path, n_features: int, input_name: str = "input") -> Path:
    """A tiny IsolationForest as ONNX: float input [N, n], outputs label, scores and score."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")
    onnx = pytest.importorskip("onnx")
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import IsolationForest

    x = np.random.default_rng(n_features).normal(size=(128, n_features)).astype(np.float32)
    forest = IsolationForest(n_estimators=3, random_state=0).fit(x)
    model = convert_sklearn(
        forest,
        initial_types=[(input_name, FloatTensorType([None, n_features]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    # score = -decision_function: higher is more anomalous (the project's convention)
    model.graph.node.append(onnx.helper.make_node("Neg", ["scores"], ["score"]))
    model.graph.output.append(
        onnx.helper.make_tensor_value_info("score", onnx.TensorProto.FLOAT, [None, 1])
    )
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "pump": _isolation_forest(folder / "pump-ae-v1.onnx", 4),
        "reefer": _isolation_forest(folder / "reefer-ae-v1.onnx", 4),
        "two": _isolation_forest(folder / "two.onnx", 2),
        "three": _isolation_forest(folder / "three.onnx", 3),
        "named": _isolation_forest(folder / "named.onnx", 2, input_name="float_input"),
    }


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_validates_with_real_models(
    name: str, example_env: None, onnx_models: dict[str, Path], tmp_path: Path
) -> None:
    text = (topologies_dir() / name).read_text()
    for device_type in ("pump", "reefer"):
        shipped = f"../src/edgestream/ml/models/{device_type}-ae-v1.onnx"
        text = text.replace(shipped, str(onnx_models[device_type]))
    topology = load_topology(write(tmp_path, text, name), check_files=True)
    for device_type in topology.models:
        assert topology.model_path(device_type) == onnx_models[device_type]


def test_model_file_signature_is_checked(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    text = BASE.replace("path: pump.onnx", f"path: {onnx_models['three']}").replace(
        "path: reefer.onnx", f"path: {onnx_models['named']}"
    )
    found = problems(tmp_path, text, check_files=True)
    pump = next(p for p in found if "models.pump.path" in p)
    assert "got a model whose input 'input' is tensor(float) of shape [N, 3]" in pump
    assert "expected one float tensor 'input' of shape [N, 2]" in pump
    reefer = next(p for p in found if "models.reefer.path" in p)
    assert "input 'float_input'" in reefer and "expected one float tensor 'input'" in reefer
    assert "set input_name" in reefer


def test_model_output_and_input_name_settings(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    text = (
        BASE.replace("path: pump.onnx", f"path: {onnx_models['two']}, output: scor")
        .replace("features:\n", "features:\n  reefer: [supply_air_temp, door_open]\n", 1)
        .replace("  reefer: [supply_air_temp]\n", "")
    )
    text = text.replace(
        "path: reefer.onnx", f"path: {onnx_models['named']}, input_name: float_input"
    )
    (problem,) = problems(tmp_path, text, check_files=True)
    assert "models.pump.output: got 'scor'; expected an output of two.onnx" in problem
    assert "did you mean 'score'?" in problem


def _with_sidecar(model: Path, folder: Path, channels: list[str], width: int) -> Path:
    """A copy of ``model`` with a sidecar: an extractor over ``channels`` gives ``width`` cols."""
    copy = folder / model.name
    shutil.copy(model, copy)
    sidecar = {
        "version": copy.stem,
        "channels": channels,
        "inputs": [f"f{i}" for i in range(width)],
    }
    copy.with_suffix(".json").write_text(json.dumps(sidecar))
    return copy


def test_sidecar_describes_derived_inputs(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    # 4 derived columns from the 2 pump channels, 4 from reefer's 1: the 4-wide models fit
    pump = _with_sidecar(onnx_models["pump"], models, ["vibration_rms", "bearing_temp"], 4)
    reefer = _with_sidecar(onnx_models["reefer"], models, ["supply_air_temp"], 4)
    text = BASE.replace("path: pump.onnx", f"path: {pump}").replace(
        "path: reefer.onnx", f"path: {reefer}"
    )
    load_text(tmp_path, text, check_files=True)
    _with_sidecar(onnx_models["pump"], models, ["bearing_temp", "vibration_rms"], 4)
    _with_sidecar(onnx_models["reefer"], models, ["supply_air_temp"], 9)
    found = problems(tmp_path, text, check_files=True)
    assert len(found) == 2
    assert (
        "models.pump.path: got a model reading [bearing_temp, vibration_rms] (its sidecar "
        "pump-ae-v1.json: same channels in another order: the model reads [bearing_temp, "
        "vibration_rms]); expected a model reading the features of 'pump': "
        "[vibration_rms, bearing_temp]" in found[0]
    )
    assert "expected one float tensor 'input' of shape [N, 9] (features derived from" in found[1]


def test_unloadable_model_file(tmp_path: Path) -> None:
    (tmp_path / "pump.onnx").write_bytes(b"not a model")
    (tmp_path / "reefer.onnx").write_bytes(b"not a model either")
    found = problems(tmp_path, BASE, check_files=True)
    assert len(found) == 2 and "expected an ONNX model onnxruntime can load" in found[0]


# --- units and runnable docstrings -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("10s", 10_000), ("1m", 60_000), ("2h", 7_200_000), (250, 250), ("0", 0)],
)
def test_parse_duration(text: str | int, ms: int) -> None:
    assert parse_duration(text) == ms
    assert parse_duration(format_duration(ms)) == ms


@pytest.mark.parametrize(("text", "size"), [("64MB", 64 * 10**6), ("1GiB", 2**30), (10, 10)])
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["ten seconds", "-1s", True, None, 0.5, "1.0001s"])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    "module",
    [
        "edgestream.core.topology",
        "edgestream.core.topology.fields",
        "edgestream.core.topology.loader",
        "edgestream.core.topology.yamlsrc",
        "edgestream.core.topology.explain",
        "edgestream.core.topology.errors",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    run_doctests(importlib.import_module(module))
