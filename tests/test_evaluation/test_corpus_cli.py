"""Reading a NAB corpus and results directory, and ``edgestream eval nab-score`` on them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edgestream.cli import evaluate
from edgestream.evaluation import score_corpus
from edgestream.evaluation.corpus import NabCorpus, read_results_dir
from edgestream.evaluation.exceptions import CorpusError
from tests.support.nab import NAB, load_results

app = typer.Typer()
app.add_typer(evaluate.app, name="eval")  # as edgestream.cli.main registers it

SERIES = [
    "artificialNoAnomaly/art_daily_no_noise.csv",
    "realAdExchange/exchange-3_cpc_results.csv",
    "realKnownCause/nyc_taxi.csv",
]


def write_corpus(root: Path, detector: str = "numenta", series: list[str] = SERIES) -> Path:
    """A small NAB checkout: three series' windows, the profiles, scoreboard and results."""
    (root / "labels").mkdir(parents=True)
    (root / "config").mkdir()
    windows = json.loads((NAB / "combined_windows.json").read_text())
    (root / "labels" / "combined_windows.json").write_text(
        json.dumps({name: windows[name] for name in SERIES})
    )
    shutil.copyfile(NAB / "profiles.json", root / "config" / "profiles.json")
    results = root / "results" / detector
    results.mkdir(parents=True)
    shutil.copyfile(NAB / "final_results.json", root / "results" / "final_results.json")
    for name, (ts, scores) in load_results(detector).items():
        if name not in series:
            continue
        category, file = name.split("/")
        (results / category).mkdir(exist_ok=True)
        stamps = np.datetime_as_string(ts, unit="s")
        lines = [
            f"{t.replace('T', ' ')},0.0,{float(s)!r},0" for t, s in zip(stamps, scores, strict=True)
        ]
        text = "timestamp,value,anomaly_score,label\n" + "\n".join(lines) + "\n"
        (results / category / f"{detector}_{file}").write_text(text)
    return root


def test_results_dir_reads_back_exactly(tmp_path: Path) -> None:
    root = write_corpus(tmp_path)
    detector, results = read_results_dir(root / "results" / "numenta")
    assert detector == "numenta" and sorted(results) == SERIES
    expected = load_results("numenta")
    for name in SERIES:
        assert np.array_equal(results[name].scores, expected[name].scores)
        assert np.array_equal(results[name].timestamps, expected[name].timestamps)
    corpus = NabCorpus.at(root)
    assert corpus.profiles()["reward_low_FN_rate"].fn == 2.0
    assert corpus.published()["numenta"]["standard"] == pytest.approx(70.10, abs=0.01)
    assert len(corpus.windows()["realKnownCause/nyc_taxi.csv"]) == 5


def test_corpus_errors_say_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="--corpus must name a NAB checkout"):
        NabCorpus.at(tmp_path)
    with pytest.raises(CorpusError, match="not found"):
        read_results_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="results directory such as results/numenta"):
        read_results_dir(tmp_path / "empty")
    bad = tmp_path / "bad" / "cat"
    bad.mkdir(parents=True)
    (bad / "bad_x.csv").write_text("time,score\n1,2\n")
    with pytest.raises(CorpusError, match="expected columns"):
        read_results_dir(tmp_path / "bad")


def test_nab_score_cli_json_and_scoreboard(tmp_path: Path) -> None:
    root = write_corpus(tmp_path)
    args = ["eval", "nab-score", "--results", str(root / "results" / "numenta")]
    result = CliRunner().invoke(app, [*args, "--corpus", str(root), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert set(out["profiles"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert out["series_scored"] == out["series_in_corpus"] == 3
    assert out["published_self"]["standard"] == pytest.approx(70.10, abs=0.01)
    assert out["profiles"]["standard"]["categories"]["artificialNoAnomaly"] is None
    assert "realKnownCause" in out["profiles"]["standard"]["categories"]
    direct = score_corpus(
        {n: r for n, r in load_results("numenta").items() if n in SERIES},
        NabCorpus.at(root).windows(),
    )
    assert out["profiles"]["standard"]["score"] == pytest.approx(direct.profiles["standard"].score)
    assert "windowedGaussian" in result.output and "scored" in result.output


def test_nab_score_cli_partial_results_and_threshold(tmp_path: Path) -> None:
    root = write_corpus(tmp_path, "windowedGaussian", series=SERIES[1:])
    args = ["eval", "nab-score", "--results", str(root / "results" / "windowedGaussian")]
    result = CliRunner().invoke(app, [*args, "--corpus", str(root), "--threshold", "1.0", "--json"])
    assert result.exit_code == 0, result.output
    assert "scored 2 of the corpus' 3 series" in result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert {p["threshold"] for p in out["profiles"].values()} == {1.0}
