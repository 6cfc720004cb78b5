"""Reading a Numenta Anomaly Benchmark corpus and a detector's NAB-format results directory.

The corpus layout (NAB's repository, MIT licence)::

    data/<category>/<series>.csv            timestamp,value
    labels/combined_windows.json            {"<category>/<series>.csv": [[start, end], ...]}
    config/profiles.json                    {"standard": {"CostMatrix": {"tpWeight": ...}}, ...}
    results/final_results.json              {"<detector>": {"standard": 70.1, ...}, ...}

A detector's results directory (``results/<detector>/``) holds
``<category>/<detector>_<series>.csv`` with at least ``timestamp`` and ``anomaly_score``.

>>> read_profiles_json('{"standard": {"CostMatrix": {"tpWeight": 1.0, "fpWeight": 0.11, '
...                    '"fnWeight": 1.0, "tnWeight": 1.0}}}')
{'standard': Profile(tp=1.0, fp=0.11, fn=1.0)}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgestream.evaluation.exceptions import CorpusError
from edgestream.evaluation.nab import Profile, SeriesResult
from edgestream.evaluation.windows import Window

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class NabCorpus:
    """A NAB corpus directory; each part is read when asked for."""

    root: Path

    @classmethod
    def at(cls, root: Path) -> NabCorpus:
        """The corpus at ``root``, checked for its windows and profiles files."""
        corpus = cls(Path(root))
        for part in (corpus.windows_path, corpus.profiles_path):
            if not part.exists():
                raise CorpusError(
                    f"{part} not found: --corpus must name a NAB checkout (data/, labels/, "
                    "config/, results/)"
                )
        return corpus

    @property
    def windows_path(self) -> Path:
        return self.root / "labels" / "combined_windows.json"

    @property
    def profiles_path(self) -> Path:
        return self.root / "config" / "profiles.json"

    @property
    def published_path(self) -> Path:
        return self.root / "results" / "final_results.json"

    def windows(self) -> dict[str, list[Window]]:
        """Every series' anomaly windows, by ``category/file.csv``."""
        return read_windows(self.windows_path)

    def profiles(self) -> dict[str, Profile]:
        """The scoring profiles' cost matrices."""
        return read_profiles_json(_read_text(self.profiles_path))

    def published(self) -> dict[str, dict[str, float]]:
        """The published scoreboard (detector -> profile -> normalised score); ``{}`` if none."""
        if not self.published_path.exists():
            return {}
        return json.loads(_read_text(self.published_path))

    def timestamps(self, name: str) -> np.ndarray:
        """Row timestamps of series ``name`` from its data file."""
        return read_csv_columns(self.root / "data" / name, ["timestamp"])["timestamp"]


def read_windows(path: Path) -> dict[str, list[Window]]:
    """A NAB windows file: series name -> ``[(start, end), ...]`` (timestamp strings)."""
    raw = _load_json(path)
    try:
        return {name: [(w[0], w[1]) for w in spans] for name, spans in raw.items()}
    except (AttributeError, IndexError, TypeError):
        raise CorpusError(f"{path}: expected {{series: [[start, end], ...]}}") from None


def read_profiles_json(text: str) -> dict[str, Profile]:
    """NAB's ``profiles.json`` text as :class:`Profile` objects (the TN weight is unused)."""
    try:
        raw = json.loads(text)
        return {
            name: Profile(
                tp=float(spec["CostMatrix"]["tpWeight"]),
                fp=float(spec["CostMatrix"]["fpWeight"]),
                fn=float(spec["CostMatrix"]["fnWeight"]),
            )
            for name, spec in raw.items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CorpusError(
            f"profiles: expected {{profile: {{CostMatrix: {{tpWeight, fpWeight, fnWeight}}}}}} "
            f"({error})"
        ) from None


def read_results_dir(path: Path) -> tuple[str, dict[str, SeriesResult]]:
    """A detector's NAB results directory: ``(detector name, series name -> result)``.

    The detector's name is the directory's; ``<category>/<detector>_<series>.csv`` becomes
    ``<category>/<series>.csv``. Files without that prefix keep their name.
    """
    path = Path(path)
    if not path.is_dir():
        raise CorpusError(f"results directory {path} not found")
    detector = path.name
    results: dict[str, SeriesResult] = {}
    for csv in sorted(path.glob("*/*.csv")):
        file = csv.name.removeprefix(f"{detector}_")
        columns = read_csv_columns(csv, ["timestamp", "anomaly_score"])
        results[f"{csv.parent.name}/{file}"] = SeriesResult(
            columns["timestamp"], columns["anomaly_score"]
        )
    if not results:
        raise CorpusError(
            f"{path} holds no <category>/<detector>_<series>.csv files: pass a NAB results "
            "directory such as results/numenta"
        )
    return detector, results


def read_csv_columns(path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    """Named columns of a CSV file: ``timestamp`` as ``datetime64[s]``, others as float64."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, usecols=columns, float_precision="round_trip")
    except FileNotFoundError:
        raise CorpusError(f"{path} not found") from None
    except ValueError as error:
        raise CorpusError(f"{path}: {error} (expected columns {columns})") from None
    out: dict[str, np.ndarray] = {}
    for column in columns:
        if column == "timestamp":
            stamps = pd.to_datetime(frame[column], format=TIMESTAMP_FORMAT, errors="coerce")
            if stamps.isna().any():
                raise CorpusError(f"{path}: timestamps must read as {TIMESTAMP_FORMAT}")
            out[column] = stamps.to_numpy().astype("datetime64[s]")
        else:
            out[column] = frame[column].to_numpy(dtype=np.float64)
    return out


def _load_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise CorpusError(f"{path}: not JSON ({error})") from None


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise CorpusError(f"{path} not found") from None
