"""``edgestream models train`` on recorded history, ``models evaluate`` of what it made, and
``validate`` of a topology whose model does not read its features."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from edgestream.cli.main import app
from edgestream.ml.artifact import load_artifact
from edgestream.ml.train_history import HistoryParams, TrainDataError, train_on_history
from tests.support import byos as kit
from tests.support.doctests import run_doctests


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("byos")
    data = kit.export(tmp / "pumps.csv", seed=5)
    topology = kit.compressor_topology(tmp / "topology.yaml", None)
    model, report = kit.train(tmp, data, topology)
    return {"tmp": tmp, "data": data, "model": model, "report": report}


def test_a_model_trained_on_the_normal_rows_finds_the_injected_anomalies(trained) -> None:
    """Trained on the label-0 rows of a simulator export, evaluated through the gateway's
    path on the whole export: the injected episodes are found (event F1 >= 0.9) and so are
    their readings (per-point F1 >= 0.9, each reading flagged when its own score exceeds the
    threshold calibrated on held-out normal rows; measured 0.92 with seed 5)."""
    tmp, model = trained["tmp"], trained["model"]
    topology = kit.compressor_topology(tmp / "eval.yaml", model)
    out = kit.cli("models", "evaluate", str(model), "--data", str(trained["data"]),
                  "-t", str(topology), *kit.MAP_ARGS, "--json")  # fmt: skip
    (quality,) = json.loads(out.stdout.strip().splitlines()[-1])["models"]
    frame = pd.read_csv(trained["data"])
    assert quality["version"] == "compressor-ae-v1"
    assert quality["point"]["tp"] + quality["point"]["fn"] == int(frame["label"].sum())
    assert quality["event"]["episodes"] >= 20
    assert quality["event"]["f1"] >= 0.9, quality["event"]
    assert quality["point"]["f1"] >= 0.9, quality["point"]
    assert quality["point"]["precision"] >= 0.9, quality["point"]
    assert quality["threshold"] == load_artifact(model)[1].threshold  # the model's own
    assert "event F1" in out.stdout


def test_the_features_outlast_an_episode(trained) -> None:
    """The sidecar's feature config is the one the gateway rebuilds: a baseline median of
    41 readings (an episode of up to 20 never becomes its own baseline) over a noise scale
    of 256 readings."""
    _, meta = load_artifact(trained["model"])
    assert (meta.features["median"], meta.features["window"]) == (41, 256)
    assert meta.training["median"] == 41 and meta.training["window"] == 256


def test_docstring_examples() -> None:
    run_doctests(importlib.import_module("edgestream.ml.train"))


def test_the_artifact_is_what_the_gateway_loads_and_the_report_says_how(trained) -> None:
    blob, meta = load_artifact(trained["model"])  # sha256 checked against the sidecar
    report = trained["report"]
    frame = pd.read_csv(trained["data"])
    normal = int((frame["label"] == 0).sum())
    assert report["normal_rows"] == normal == report["train_rows"] + report["holdout_rows"]
    assert meta.device_type == "compressor" and meta.channels == tuple(kit.CHANNELS)
    assert meta.inputs[:3] == ("vibration.z", "vibration.dz", "vibration.flat")
    assert meta.threshold == report["threshold"] > 0
    assert set(meta.baseline) == set(kit.CHANNELS) and meta.score_baseline["count"] > 0
    assert "held-out normal rows" in meta.training["threshold_method"]
    assert report["rows_per_s"] > 0 and report["model_bytes"] == len(blob)
    col = frame.loc[frame["label"] == 0, "pressure"]
    assert report["channels"]["discharge_pressure"]["mean"] == pytest.approx(col.mean(), 1e-5)


def test_unlabelled_files_need_all_normal(tmp_path: Path, trained) -> None:
    frame = pd.read_csv(trained["data"]).drop(columns=["label"])
    path = tmp_path / "unlabelled.csv"
    frame.to_csv(path, index=False)
    from edgestream.core.topology import load_topology

    topo = load_topology(kit.compressor_topology(tmp_path / "t.yaml", None), check_files=False)
    with pytest.raises(TrainDataError, match=r"unlabelled\.csv: no label column.*--all-normal"):
        train_on_history([path], topo, HistoryParams("compressor"), kit.MAP)


def test_validate_names_the_channels_a_model_does_not_share(trained, tmp_path: Path) -> None:
    """The compressor model in a topology whose features of the type are other channels."""
    channels = {**kit.CHANNELS, "oil_temp": {"unit": "degC"}}
    channels.pop("current")
    topics = [{"name": "sensors.compressor", "device_type": "compressor", "channels": channels}]
    topology = kit.compressor_topology(
        tmp_path / "mismatch.yaml", trained["model"],
        sensors={"topics": topics}, features={"compressor": list(channels)},
    )  # fmt: skip
    result = CliRunner().invoke(app, ["validate", str(topology)])
    assert result.exit_code == 1
    assert "models.compressor" in result.output
    assert "the model lacks ['oil_temp']" in result.output
    assert "the topology's features lack ['current'] (the model reads them)" in result.output


def test_validate_names_a_model_of_another_device_type(trained, tmp_path: Path) -> None:
    """Same channels, but the model was trained for another type: the sidecar says so."""
    import shutil

    from edgestream.ml.artifact import load_meta, sidecar_path

    copy = tmp_path / "pump-model.onnx"
    shutil.copy(trained["model"], copy)
    meta = load_meta(trained["model"])
    text = meta.to_json().replace('"device_type": "compressor"', '"device_type": "pump"')
    sidecar_path(copy).write_text(text)
    topology = kit.compressor_topology(tmp_path / "other.yaml", copy)
    result = CliRunner().invoke(app, ["validate", str(topology)])
    assert result.exit_code == 1
    assert "models.compressor: pump-model.onnx was trained for device type 'pump'" in (
        result.output
    )
    ok = kit.compressor_topology(tmp_path / "ok.yaml", trained["model"])
    assert CliRunner().invoke(app, ["validate", str(ok)]).exit_code == 0
