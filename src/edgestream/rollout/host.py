"""What the gateway's rollout agent sees of the worker it runs in: :class:`ModelHost` (the
worker's ``Gateway`` is one) and :class:`ServedPipeline` (a topic's ``TopicPipeline``), and
the :class:`ShadowRun` a pipeline scores beside its live model. The agent uses nothing else of
the worker (``tests/test_rollout/test_model_host.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgestream.core.registry.client import RegistryLike
from edgestream.core.topology import Topology
from edgestream.ml.scorer import OnnxScorer
from edgestream.rollout.slots import ShadowStats

__all__ = ["ModelHost", "ServedPipeline", "ShadowRun"]


@dataclass
class ShadowRun:
    """A candidate scored beside the live model on every batch of its device type. Called
    by the pipeline in its worker thread (one thread: no locking needed)."""

    scorer: OnnxScorer
    threshold: float
    stats: ShadowStats

    def observe(self, features: np.ndarray, live_scores: np.ndarray, live_threshold: float) -> None:
        self.stats.add(live_scores, self.scorer.score(features), live_threshold, self.threshold)


class ServedPipeline(Protocol):
    """What the agent touches of one topic's pipeline in the worker (the worker's
    ``TopicPipeline`` is one): the model it scores with, and the candidate beside it."""

    scorer: OnnxScorer | None
    threshold: float
    shadow: Any

    def set_model(self, scorer: OnnxScorer, threshold: float) -> None:
        """Swap the model between batches (same inputs)."""
        ...


class ModelHost(Protocol):
    """What the rollout agent needs of the worker that serves the models (the worker's
    :class:`~edgestream.edge.worker.Gateway` is one): where it runs, its pipelines between
    batches, and its edge producer."""

    @property
    def topology(self) -> Topology: ...
    @property
    def gateway_id(self) -> str: ...
    @property
    def data_dir(self) -> Path: ...
    @property
    def bootstrap(self) -> str: ...
    @property
    def registry(self) -> RegistryLike: ...

    def pipelines_of(self, device_type: str) -> list[ServedPipeline]:
        """The pipelines of ``device_type`` running now (no lock taken)."""
        ...

    def locked_pipelines(self, device_type: str) -> AsyncIterator[ServedPipeline]:
        """Each pipeline of ``device_type`` in turn, between two batches (its lock held)."""
        ...

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        """Produce one record to an edge topic and wait until it is delivered."""
        ...

    async def send_alert(self, alert: dict[str, Any]) -> None:
        """Put an AnomalyAlert on ``edge.alerts`` and wait until it is delivered."""
        ...

    def load_topology_model(self, device_type: str) -> tuple[OnnxScorer, float]:
        """The model the topology names for ``device_type`` and its threshold (blocking)."""
        ...
