"""``edgestream models evaluate``: labelled files through the gateway's path, measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from typer.testing import CliRunner

from edgestream.cli import models
from edgestream.core.paths import topologies_dir
from edgestream.evaluation.labelled import Labelled, detection_delays, episodes_of
from edgestream.evaluation.replay import Recording
from edgestream.evaluation.windows import window_rows
from tests.support.nab import NAB

app = typer.Typer()
app.add_typer(models.app, name="models")

SERIES = "realKnownCause/rogue_agent_key_hold.csv"


def labelled_file(tmp_path: Path) -> Path:
    """A NAB series with its anomaly windows as labels (1 inside a window)."""
    frame = pd.read_csv(NAB / "data" / SERIES)
    windows = json.loads((NAB / "combined_windows.json").read_text())[SERIES]
    stamps = pd.to_datetime(frame["timestamp"]).to_numpy().astype("datetime64[s]")
    frame["label"] = 0
    for a, b in window_rows(stamps, windows):
        frame.loc[a:b, "label"] = 1
    path = tmp_path / "rogue.csv"
    frame.to_csv(path, index=False)
    return path


def test_models_evaluate_reports_point_event_and_delay(tmp_path: Path) -> None:
    path = labelled_file(tmp_path)
    args = ["models", "evaluate", "online", "--compare", "online", "--data", str(path),
            "-t", str(topologies_dir() / "nab.yaml"), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    first, second = doc["models"]
    assert first == {**second, "us_per_reading": first["us_per_reading"]}  # same model twice
    point = first["point"]
    assert point["tp"] + point["fp"] + point["fn"] + point["tn"] == first["readings"] == 1882
    assert point["tp"] + point["fn"] == int(pd.read_csv(path)["label"].sum())
    assert first["event"]["episodes"] == 2
    assert 0 <= first["event"]["detected"] <= 2
    assert "missed-alarm rate" in result.stdout and "delay" in result.stdout


def test_episodes_and_delays() -> None:
    rec = Recording.one_device("d", np.arange(8) * 1000, np.zeros(8))
    labelled = Labelled("x", rec, np.array([0, 1, 1, 0, 0, 1, 1, 1], bool))
    eps = episodes_of(labelled)
    assert [(e.start_ts, e.end_ts) for e in eps] == [(1000, 2000), (5000, 7000)]
    alerts = [{"device_id": "d", "status": "open", "ts": 6000}]
    assert detection_delays(eps, alerts) == [None, 1000]


def test_compares_an_onnx_model_with_the_online_detector(tmp_path: Path) -> None:
    """The shipped pump model and the online detector side by side on labelled simulator
    readings, through the default topology's pump pipeline."""
    from edgestream.ml.artifact import shipped_model_path
    from edgestream.ml.data import simulate_readings
    from edgestream.sim import SimConfig

    config = SimConfig(devices=6, rate=10.0, duration=120.0, seed=31, anomaly_rate=0.01,
                       late_fraction=0.0, labels=None)  # fmt: skip
    sim = simulate_readings(config, "pump")
    frame = pd.DataFrame(sim.values, columns=list(sim.channels))
    frame.insert(0, "device_id", sim.device_ids)
    frame.insert(0, "timestamp", sim.ts)
    frame["label"] = sim.anomalous.astype(int)
    path = tmp_path / "pumps.csv"
    frame.to_csv(path, index=False)
    model = shipped_model_path("pump")
    default = str(topologies_dir() / "default.yaml")
    args = ["models", "evaluate", str(model), "--compare", "online", "--data", str(path),
            "-t", default, "--device-type", "pump", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    onnx, online = json.loads(result.stdout.strip().splitlines()[-1])["models"]
    assert onnx["model"] == model.name and onnx["version"] == "pump-ae-v1"
    assert online["model"] == "online" and online["threshold"] == 0.5
    assert onnx["readings"] == online["readings"] == len(frame)
    assert onnx["event"]["episodes"] == online["event"]["episodes"] == len(sim.episodes)
    assert onnx["event"]["recall"] >= 0.8  # the trained model finds the injected episodes
