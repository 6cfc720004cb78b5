"""The labels file (byte-identical per seed, readable) and CSV replay with NAB windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgestream.core.serde import AvroDeserializer, AvroSerializer, subject_for
from edgestream.sim import ReplayError, ReplaySpec, SimConfig, Simulator, read_labels, write_labels
from edgestream.sim.replay import read_series, read_windows
from tests.support.sim import START, config, run


def _encoded(cfg: SimConfig, registry: str) -> list[tuple[str, bytes, bytes]]:
    messages, _ = run(cfg)
    schema = "SensorFrame" if cfg.frames > 1 else "SensorReading"
    ser = {t: AvroSerializer(registry, schema, subject_for(t)) for t in {m.topic for m in messages}}
    return [(m.topic, m.key, ser[m.topic](m.value)) for m in messages]


@pytest.mark.parametrize("frames", [1, 8])
def test_same_seed_gives_byte_identical_records_and_labels(tmp_path: Path, frames: int) -> None:
    cfg = config(anomaly_rate=0.05, late_fraction=0.1, drift_at=60.0, frames=frames)
    assert _encoded(cfg, "mock://a") == _encoded(cfg, "mock://a")
    files = []
    for i in range(2):
        _, sim = run(cfg)
        files.append(write_labels(tmp_path / f"labels-{i}.jsonl", sim.labels()).read_bytes())
    assert files[0] == files[1]
    messages, _ = run(cfg)
    decode = AvroDeserializer("mock://a")
    assert [decode(value) for _, _, value in _encoded(cfg, "mock://a")] == [
        m.value for m in messages
    ]


def test_labels_file_round_trip_and_format(tmp_path: Path) -> None:
    cfg = config(anomaly_rate=0.05, late_fraction=0.1, drift_at=60.0)
    messages, sim = run(cfg)
    path = write_labels(tmp_path / "l.jsonl", sim.labels())
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    kinds = [line["kind"] for line in lines]
    assert kinds[-1] == "run" and {"anomaly", "drift", "late"} <= set(kinds)
    anomaly = next(line for line in lines if line["kind"] == "anomaly")
    expected = {"kind", "device_id", "type", "start_ts", "end_ts", "first_seq", "last_seq"}
    assert expected | {"channels"} == set(anomaly)
    run_line = lines[-1]
    assert run_line["readings"] == sum(m.readings for m in messages)
    assert run_line["params"]["seed"] == cfg.seed and run_line["params"]["start_time"] == START
    back = read_labels(path)
    assert json.dumps(back.lines()) == json.dumps(sim.labels().lines())
    assert back.anomalies == sim.labels().anomalies and back.late == sim.labels().late
    assert len(back.reading_ids()) == run_line["readings"]


def test_replay_reproduces_the_series(nab_csv: Path) -> None:
    ts, values = read_series(nab_csv)
    assert len(ts) == 22695 and ts[0] == 1386018900000  # 2013-12-02 21:15:00 UTC
    assert (np.diff(ts) < 0).sum() == 1  # the file's clock goes back once (2014-01-07 02:55)
    spec = ReplaySpec(nab_csv, "machine-0001", "site-9", "machine", "temperature")
    messages, sim = run(config(replay=spec, duration=None, start_time=None, fast=True))
    assert len(messages) == len(ts)
    assert [m.value["ts"] for m in messages] == ts.tolist()  # file order, as recorded
    assert [m.value["seq"] for m in messages] == list(range(len(ts)))
    got = np.array([m.value["channels"]["temperature"] for m in messages])
    np.testing.assert_array_equal(got, values)
    first = messages[0].value
    assert (first["device_id"], first["site"], first["device_type"]) == (
        "machine-0001",
        "site-9",
        "machine",
    )
    assert {m.topic for m in messages} == {"sensors.machine"}
    assert sim.labels().run.readings_per_device == {"machine-0001": len(ts)}


def test_nab_windows_become_anomaly_labels(nab_csv: Path, nab_windows: Path) -> None:
    ts, _ = read_series(nab_csv)
    windows = read_windows(nab_windows, nab_csv)
    assert len(windows) == 4
    spec = ReplaySpec(nab_csv, "machine-0001", channel="temperature", windows=nab_windows)
    _, sim = run(config(replay=spec, duration=None, start_time=None))
    anomalies = sim.labels().anomalies
    assert len(anomalies) == 4
    for (start, end), label in zip(windows, anomalies, strict=True):
        inside = np.flatnonzero((ts >= start) & (ts <= end))
        assert (label.first_seq, label.last_seq) == (inside[0], inside[-1])
        assert (label.start_ts, label.end_ts) == (ts[inside[0]], ts[inside[-1]])
        assert label.type == "nab_window" and label.channels == ("temperature",)
    assert sim.labels().run.anomalous_readings == sum(a.readings for a in anomalies)


def test_replay_shift_duration_late_and_frames(nab_csv: Path, nab_windows: Path) -> None:
    spec = ReplaySpec(nab_csv, "m-1", windows=nab_windows)
    cfg = config(replay=spec, duration=10 * 86400.0, start_time=START, late_fraction=0.05)
    messages, sim = run(cfg)
    labels = sim.labels()
    readings = labels.run.readings
    assert readings == 10 * 288  # 5-minute series, 10 days
    assert min(m.value["ts"] for m in messages) == START
    assert labels.late and all(x.device_id == "m-1" for x in labels.late)
    assert [a.start_ts - START for a in labels.anomalies] == [(7 * 24 + 9) * 3_600_000 + 600_000]
    framed, _ = run(cfg.with_(frames=16))
    assert sum(m.readings for m in framed) == readings


def test_replay_errors_name_the_problem(tmp_path: Path, nab_csv: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2013-12-02 21:15:00,abc\n")
    with pytest.raises(ReplayError, match=r"bad\.csv:2"):
        read_series(bad)
    windows = tmp_path / "w.json"
    windows.write_text(json.dumps({"other/file.csv": []}))
    with pytest.raises(ReplayError, match="no entry for machine_temperature"):
        Simulator(config(replay=ReplaySpec(nab_csv, "m", windows=windows)))
