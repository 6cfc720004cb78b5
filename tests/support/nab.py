"""The NAB scoring test data in tests/data/nab: build it from a corpus, read it back.

Two published detectors' anomaly scores for all 58 NAB series, compact (float64, exactly as
NAB's CSVs print them: float32 changes windowedGaussian's scores near 1.0 and its NAB score):

- ``nab_timestamps.npz``: ``names``, ``lengths``, ``first`` (epoch seconds) and ``steps``
  (seconds between rows, concatenated): every series' row timestamps, from its data file;
- ``nab_scores_<detector>.npz``: ``scores``, concatenated in the order of ``names``;
- ``combined_windows.json``, ``profiles.json``, ``final_results.json``: NAB's own files.

Rebuild (from a NAB checkout; only these two detectors' results are needed)::

    python -m tests.support.nab PATH/TO/NAB
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from edgestream.evaluation.corpus import NabCorpus, read_results_dir
from edgestream.evaluation.nab import SeriesResult

NAB = Path(__file__).parent.parent / "data" / "nab"
DETECTORS = ("numenta", "windowedGaussian")


def load_timestamps(root: Path = NAB) -> dict[str, np.ndarray]:
    """Every series' row timestamps (``datetime64[s]``) by ``category/file.csv``."""
    with np.load(root / "nab_timestamps.npz") as z:
        names, lengths, first, steps = z["names"], z["lengths"], z["first"], z["steps"]
    out: dict[str, np.ndarray] = {}
    offset = 0
    for name, n, start in zip(names, lengths, first, strict=True):
        deltas = steps[offset : offset + n - 1].astype(np.int64)
        offset += n - 1
        seconds = start + np.concatenate([[0], np.cumsum(deltas)])
        out[str(name)] = seconds.astype("datetime64[s]")
    return out


def load_results(detector: str, root: Path = NAB) -> dict[str, SeriesResult]:
    """A published detector's results for every series, as :func:`score_corpus` takes them."""
    timestamps = load_timestamps(root)
    with np.load(root / f"nab_scores_{detector}.npz") as z:
        scores = z["scores"]
    out: dict[str, SeriesResult] = {}
    offset = 0
    for name, ts in timestamps.items():
        out[name] = SeriesResult(ts, scores[offset : offset + len(ts)])
        offset += len(ts)
    assert offset == len(scores), f"{detector}: {len(scores)} scores for {offset} rows"
    return out


def build(corpus_root: Path, out: Path = NAB) -> None:
    """Write the test data from a NAB corpus (checks results and data timestamps agree)."""
    corpus = NabCorpus.at(corpus_root)
    names = sorted(corpus.windows())
    stamps = [corpus.timestamps(name).astype(np.int64) for name in names]
    np.savez_compressed(
        out / "nab_timestamps.npz",
        names=np.array(names),
        lengths=np.array([len(s) for s in stamps], dtype=np.int64),
        first=np.array([s[0] for s in stamps], dtype=np.int64),
        steps=np.concatenate([np.diff(s) for s in stamps]).astype(np.int32),
    )
    for detector in DETECTORS:
        _, results = read_results_dir(corpus.root / "results" / detector)
        for name, seconds in zip(names, stamps, strict=True):
            if not np.array_equal(results[name].timestamps.astype(np.int64), seconds):
                raise SystemExit(f"{detector} {name}: results rows differ from the data file")
        scores = np.concatenate([results[name].scores for name in names])
        np.savez_compressed(out / f"nab_scores_{detector}.npz", scores=scores)
    shutil.copyfile(corpus.windows_path, out / "combined_windows.json")
    shutil.copyfile(corpus.profiles_path, out / "profiles.json")
    shutil.copyfile(corpus.published_path, out / "final_results.json")
    shutil.copyfile(corpus.root / "LICENSE.txt", out / "LICENSE.txt")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
