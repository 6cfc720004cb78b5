"""``eval nab``: every NAB series replayed as one device through a topology's detection path.

Per series (``data/<category>/<series>.csv``), :func:`replay_series` reads the rows, sets the
online detector's calibration to the series' NAB probationary period (the first 15 % of its
rows, at most 750: the only per-series setting, as NAB gives every detector that period),
and replays the rows through :func:`~edgestream.evaluation.replay.replay`. Each score uses
only the rows before it. :func:`write_result` writes NAB's results format
(``<detector>/<category>/<detector>_<series>.csv``: timestamp, value, anomaly_score, label);
:func:`run_corpus` does the whole corpus and scores it with
:func:`~edgestream.evaluation.nab.score_corpus`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgestream.core.topology import Topology
from edgestream.evaluation.corpus import NabCorpus, read_csv_columns
from edgestream.evaluation.exceptions import CorpusError
from edgestream.evaluation.nab import Scores, SeriesResult, score_corpus
from edgestream.evaluation.replay import Recording, replay, sensor_topic, with_online_settings
from edgestream.evaluation.report import result_json
from edgestream.evaluation.windows import Window, probation_rows, window_rows

DEFAULT_DETECTOR = "edgestream"


@dataclass(frozen=True)
class SeriesRun:
    """One series replayed: its rows, scores and the time the pipeline took."""

    name: str  # category/file.csv
    timestamps: np.ndarray  # datetime64[s]
    values: np.ndarray
    scores: np.ndarray
    labels: np.ndarray  # 1 inside an anomaly window
    seconds: float
    alerts: int


@dataclass
class CorpusRun:
    """Every series replayed and the NAB scores of the results."""

    detector: str
    series: list[SeriesRun] = field(default_factory=list)
    scores: Scores | None = None

    @property
    def records(self) -> int:
        return sum(len(s.scores) for s in self.series)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.series)

    @property
    def us_per_record(self) -> float:
        return 1e6 * self.seconds / max(self.records, 1)


def series_names(corpus: NabCorpus, pattern: str | None = None) -> list[str]:
    """The corpus' series (``category/file.csv``) that match the glob ``pattern``."""
    names = sorted(corpus.windows())
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    if not names:
        raise CorpusError(f"no series of {corpus.root} matches {pattern!r}")
    return names


def replay_series(
    topology: Topology, corpus: NabCorpus, name: str, windows: list[Window]
) -> SeriesRun:
    """Replay series ``name`` as one device of the topology's sensor topic."""
    columns = read_csv_columns(corpus.root / "data" / name, ["timestamp", "value"])
    stamps, values = columns["timestamp"], columns["value"]
    topic = sensor_topic(topology)
    model = topology.models.get(topic.device_type)
    if model is not None and model.kind == "online":
        calibration = max(probation_rows(len(values)), 10)
        topology = with_online_settings(topology, topic.device_type, calibration=calibration)
    channel = topology.features_for(topic.device_type)[0]
    device = Path(name).stem
    ms = stamps.astype("datetime64[ms]").astype(np.int64)
    run = replay(topology, Recording.one_device(device, ms, values, channel), topic.name)
    labels = np.zeros(len(values), dtype=np.int64)
    for first, last in window_rows(stamps, windows):
        labels[first : last + 1] = 1
    scores = np.nan_to_num(run.scores, nan=0.0)
    return SeriesRun(name, stamps, values, scores, labels, run.seconds, len(run.alerts))


def write_result(out: Path, detector: str, run: SeriesRun) -> Path:
    """NAB's result CSV of one series under ``out/<detector>/``; returns its path."""
    category, file = run.name.split("/", 1)
    path = out / detector / category / f"{detector}_{file}"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamps = np.datetime_as_string(run.timestamps, unit="s")
    with path.open("w") as f:
        f.write("timestamp,value,anomaly_score,label\n")
        rows = zip(
            stamps, run.values.tolist(), run.scores.tolist(), run.labels.tolist(), strict=True
        )
        for t, v, s, label in rows:
            f.write(f"{t.replace('T', ' ')},{v!r},{s!r},{label}\n")
    return path


def run_corpus(
    topology: Topology,
    corpus: NabCorpus,
    pattern: str | None = None,
    out: Path | None = None,
    detector: str = DEFAULT_DETECTOR,
    progress: Callable[[int, int, SeriesRun], None] | None = None,
) -> CorpusRun:
    """Replay and score every series matching ``pattern``; results under ``out`` if given."""
    windows = corpus.windows()
    names = series_names(corpus, pattern)
    result = CorpusRun(detector)
    for i, name in enumerate(names):
        run = replay_series(topology, corpus, name, windows[name])
        result.series.append(run)
        if out is not None:
            write_result(out, detector, run)
        if progress is not None:
            progress(i + 1, len(names), run)
    scored = {s.name: SeriesResult(s.timestamps, s.scores) for s in result.series}
    result.scores = score_corpus(scored, {n: windows[n] for n in names}, corpus.profiles())
    return result


def corpus_json(
    result: CorpusRun, topology: Topology, corpus: NabCorpus, wall: float, out: Path | None
) -> dict[str, Any]:
    """The ``eval nab --json`` object: the scores and the published board
    (:func:`~edgestream.evaluation.report.result_json`), the model and its settings, the
    records and the pipeline's time per record."""
    assert result.scores is not None
    windows, published = corpus.windows(), corpus.published()
    doc = result_json(
        result.detector, result.scores, published, len(result.series), len(windows), wall
    )
    spec = topology.models.get(sensor_topic(topology).device_type)
    model = None
    if spec is not None:
        online = spec.kind == "online"
        model = {
            "kind": spec.kind,
            "version": spec.version,
            "settings": spec.online.model_dump() if online else None,
            "calibration": "each series' NAB probationary period" if online else None,
        }
    doc.update(
        topology=topology.name,
        model=model,
        records=result.records,
        pipeline_seconds=round(result.seconds, 3),
        us_per_record=round(result.us_per_record, 2),
        results_dir=str(out / result.detector) if out is not None else None,
    )
    return doc
