"""``edgestream eval nab`` end to end on three real NAB series, and the replay's streaming
property: a score depends only on the readings before it (and the reading itself)."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edgestream.cli import evaluate
from edgestream.core.paths import topologies_dir
from edgestream.core.topology import load_topology
from edgestream.edge.online import OnlineDetector
from edgestream.evaluation.corpus import NabCorpus, read_csv_columns, read_results_dir
from edgestream.evaluation.nab_replay import replay_series
from edgestream.evaluation.replay import Recording, replay, with_online_settings
from edgestream.evaluation.windows import probation_rows
from tests.support.doctests import run_doctests
from tests.support.nab import NAB

app = typer.Typer()
app.add_typer(evaluate.app, name="eval")  # as edgestream.cli.main registers it

SERIES = [
    "realAdExchange/exchange-3_cpc_results.csv",
    "realKnownCause/rogue_agent_key_hold.csv",
    "realTraffic/speed_7578.csv",
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A NAB checkout of the three series whose values tests/data/nab holds."""
    root = tmp_path / "nab"
    (root / "labels").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "results").mkdir()
    windows = json.loads((NAB / "combined_windows.json").read_text())
    (root / "labels" / "combined_windows.json").write_text(
        json.dumps({name: windows[name] for name in SERIES})
    )
    shutil.copyfile(NAB / "profiles.json", root / "config" / "profiles.json")
    shutil.copyfile(NAB / "final_results.json", root / "results" / "final_results.json")
    shutil.copytree(NAB / "data", root / "data")
    return root


def test_eval_nab_writes_results_and_scores_them(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = CliRunner().invoke(
        app, ["eval", "nab", "--corpus", str(corpus), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["series_scored"] == 3 and doc["records"] == 1538 + 1882 + 1127
    assert set(doc["profiles"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    for profile in doc["profiles"].values():
        assert set(profile["categories"]) == {"realAdExchange", "realKnownCause", "realTraffic"}
    assert doc["us_per_record"] > 0 and "ARTime" in doc["published"]
    assert "[3/3]" in result.output  # progress
    # NAB's results format, read back by the scorer of eval nab-score: the same scores
    for name in SERIES:
        category, file = name.split("/")
        path = out / "edgestream" / category / f"edgestream_{file}"
        assert path.read_text().splitlines()[0] == "timestamp,value,anomaly_score,label"
        cols = read_csv_columns(path, ["timestamp", "value", "anomaly_score", "label"])
        data = read_csv_columns(corpus / "data" / name, ["timestamp", "value"])
        assert (cols["timestamp"] == data["timestamp"]).all()
        assert (cols["value"] == data["value"]).all()
        assert set(np.unique(cols["label"])) <= {0.0, 1.0} and cols["label"].sum() > 0
        scores = cols["anomaly_score"]
        assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
        assert (scores[: probation_rows(len(scores))] == 0).all()  # calibration
    again = CliRunner().invoke(
        app,
        [
            "eval",
            "nab-score",
            "--results",
            str(out / "edgestream"),
            "--corpus",
            str(corpus),
            "--json",
        ],
    )
    rescored = json.loads(again.stdout.strip().splitlines()[-1])
    for profile, entry in doc["profiles"].items():
        assert rescored["profiles"][profile]["score"] == pytest.approx(entry["score"], abs=1e-9)


def test_each_score_uses_only_earlier_records(corpus: Path) -> None:
    """Replaying a prefix gives the same scores for it; so does another batch size, and
    the pipeline's scores are the detector's own."""
    topology = load_topology(topologies_dir() / "nab.yaml")
    nab = NabCorpus.at(corpus)
    name = "realKnownCause/rogue_agent_key_hold.csv"
    full = replay_series(topology, nab, name, nab.windows()[name])
    n = len(full.scores)
    ms = full.timestamps.astype("datetime64[ms]").astype(np.int64)
    topo = with_online_settings(topology, "metric", calibration=probation_rows(n))
    for cut, batch in ((n // 2, 256), (n // 2 + 37, 7), (n - 1, 1000)):
        part = replay(topo, Recording.one_device("d", ms[:cut], full.values[:cut]), batch=batch)
        assert np.array_equal(part.scores, full.scores[:cut]), (cut, batch)
    detector = OnlineDetector(["value"], calibration=probation_rows(n))
    direct = detector.transform(["d"] * n, ms, full.values[:, None])[:, 0]
    assert np.array_equal(direct, full.scores)


def test_results_dir_name_is_the_detector(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "nab",
            "--corpus",
            str(corpus),
            "--out",
            str(out),
            "--detector",
            "mine",
            "--series",
            "realTraffic/*",
        ],
    )
    assert result.exit_code == 0, result.output
    detector, results = read_results_dir(out / "mine")
    assert detector == "mine" and sorted(results) == ["realTraffic/speed_7578.csv"]


@pytest.mark.parametrize("name", ["edgestream.evaluation.replay", "edgestream.evaluation.labelled"])
def test_docstring_examples(name: str) -> None:
    run_doctests(importlib.import_module(name))
