"""Topologies for the cloud job tests: the default one with the cloud jobs overridden."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgestream.core.topology import Topology

DEFAULT = Path(__file__).parents[2] / "topologies" / "default.yaml"


def cloud_topology(
    fleet_stats: dict[str, Any] | None = None,
    drift: dict[str, Any] | None = None,
    retrain: dict[str, Any] | None = None,
) -> Topology:
    """``topologies/default.yaml`` with ``cloud.jobs`` sections replaced by the given ones."""
    raw = yaml.safe_load(DEFAULT.read_text())
    jobs = raw.setdefault("cloud", {}).setdefault("jobs", {})
    for name, value in (("fleet_stats", fleet_stats), ("drift", drift), ("retrain", retrain)):
        if value is not None:
            jobs[name] = value
    return Topology.model_validate(raw).with_source(DEFAULT)
