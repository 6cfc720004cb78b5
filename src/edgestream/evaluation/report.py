"""A scored detector beside the published NAB scoreboard, as rows and as one JSON object.

>>> from edgestream.evaluation.nab import ProfileScore, Scores
>>> ours = Scores({"standard": ProfileScore("standard", 0.5, 0.0, -1.0, 1.0, 50.0, {}, {}, ())})
>>> board = scoreboard("mine", ours, {"numenta": {"standard": 70.1}, "null": {"standard": 0.0}})
>>> [(name, source, by["standard"]) for name, source, by in board]
[('numenta', 'published', 70.1), ('mine', 'scored', 50.0), ('null', 'published', 0.0)]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgestream.evaluation.nab import Scores

Row = tuple[str, str, dict[str, float]]
"""(detector, ``published`` or ``scored``, profile -> normalised score)."""


def scoreboard(
    detector: str, scores: Scores, published: Mapping[str, Mapping[str, float]]
) -> list[Row]:
    """The published detectors and ours, best standard score first."""
    rows: list[Row] = [(name, "published", dict(by)) for name, by in published.items()]
    rows.append((detector, "scored", {name: p.score for name, p in scores.profiles.items()}))
    return sorted(rows, key=lambda row: -row[2].get("standard", float("-inf")))


def result_json(
    detector: str,
    scores: Scores,
    published: Mapping[str, Mapping[str, float]],
    series: int,
    corpus_series: int,
    seconds: float,
) -> dict[str, Any]:
    """The ``--json`` object: our scores per profile and category, and the published board."""
    return {
        "detector": detector,
        "profiles": scores.as_dict(),
        "published": {name: dict(by) for name, by in published.items()},
        "published_self": dict(published.get(detector, {})),
        "series_scored": series,
        "series_in_corpus": corpus_series,
        "seconds": round(seconds, 3),
    }
