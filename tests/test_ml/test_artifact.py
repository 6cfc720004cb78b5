"""Model sidecars: shipped ones are complete and consistent; writing and reading them."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgestream.ml.artifact import (
    ModelMeta,
    decile_baseline,
    load_artifact,
    load_meta,
    sha256_hex,
    write_artifact,
)
from edgestream.ml.exceptions import ArtifactError
from edgestream.ml.features import FeatureExtractor
from edgestream.sim.devices import DEVICE_TYPES
from tests.support.doctests import run_doctests


@pytest.mark.parametrize(
    "name",
    [
        "edgestream.ml",
        "edgestream.ml.artifact",
        "edgestream.ml.scorer",
        "edgestream.ml.evaluate",
        "edgestream.ml.data",
    ],
)
def test_docstring_examples(name: str) -> None:
    run_doctests(importlib.import_module(name))


def test_shipped_sidecar_is_complete(shipped: Path) -> None:
    blob, meta = load_artifact(shipped)
    assert meta.sha256 == sha256_hex(blob) and meta.model_file == shipped.name
    assert meta.version == shipped.stem and meta.output == "score"
    assert FeatureExtractor.from_config(meta.features).feature_names == meta.inputs
    assert meta.threshold > 0 and meta.rule == {"consecutive": 1, "gap": 5}
    assert set(meta.baseline) == set(DEVICE_TYPES[meta.device_type].channel_names)
    for base in meta.baseline.values():
        assert len(base["edges"]) == 9 and len(base["fractions"]) == 10
        assert base["edges"] == sorted(base["edges"])
        assert abs(sum(base["fractions"]) - 1) < 1e-6 and base["count"] > 100_000
    evaluation = meta.metrics[f"eval_seed_{meta.training['eval_seed']}"]
    assert evaluation["recall"] >= 0.9 and evaluation["precision"] >= 0.9
    assert meta.training["train_seed"] != meta.training["eval_seed"]


def test_decile_baseline_bins() -> None:
    x = np.arange(1000.0)
    base = decile_baseline(x)
    assert base["edges"][0] == pytest.approx(99.9) and base["fractions"] == [0.1] * 10
    assert base["mean"] == pytest.approx(499.5)
    flat = decile_baseline(np.r_[np.zeros(900), np.ones(100)])
    assert flat["fractions"][0] == 0.9 and sum(flat["fractions"]) == pytest.approx(1)
    with pytest.raises(ArtifactError):
        decile_baseline(np.array([np.nan]))


def test_write_read_and_tamper(tmp_path: Path, shipped: Path) -> None:
    blob, meta = load_artifact(shipped)
    path = write_artifact(tmp_path, blob, meta)
    assert load_meta(path) == meta
    assert path.with_suffix(".json").read_text() == shipped.with_suffix(".json").read_text()
    path.write_bytes(blob + b"x")
    with pytest.raises(ArtifactError, match="does not match the sidecar"):
        load_artifact(path)
    with pytest.raises(ArtifactError, match="not the model's"):
        write_artifact(tmp_path, b"x", meta)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": "x"}))
    with pytest.raises(ArtifactError, match=r"bad\.json: missing \['sha256'"):
        load_meta(bad)
    assert ModelMeta.from_dict(json.loads(meta.to_json())) == dataclasses.replace(meta)
