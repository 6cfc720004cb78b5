"""The retrainer service (``edgestream retrain serve``): requests in, candidates out.

:class:`Retrainer` (:func:`serve`) consumes ``fleet.retrain`` with a committed consumer group,
drops a request whose ``data.dedup_key`` (or id) was handled before (also across restarts:
``retrain_request_id`` on ``fleet.models``), serves the others with
:func:`edgestream.retrain.candidate.retrain`, publishes each candidate on ``fleet.models`` and
runs the rollout controller (:mod:`edgestream.rollout.control`) on ``fleet.rollout``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from edgestream.core.endpoints import CloudEndpoints
from edgestream.core.offsets import committed_offsets
from edgestream.core.topology import Topology
from edgestream.ml.exceptions import ModelError
from edgestream.retrain.candidate import RetrainResult, model_history, retrain
from edgestream.rollout.history import ModelHistory, publish_updates

__all__ = ["Retrainer", "serve"]

log = logging.getLogger("edgestream.retrainer")


class Retrainer:
    """``retrain serve``: requests from ``fleet.retrain``, rollout events from ``fleet.rollout``.

    Blocking; :meth:`run` returns when ``stop_event`` is set.
    """

    def __init__(
        self,
        topology: Topology,
        endpoints: CloudEndpoints,
        private_key: Any,
        group: str = "edgestream-retrainer",
    ) -> None:
        from edgestream.rollout.control import RolloutController

        self.topology = topology
        self.endpoints = endpoints
        self.private_key = private_key
        self.group = group
        self.handled: set[str] = set()
        self.results: list[RetrainResult] = []
        self.controller = RolloutController(topology)
        self.errors = 0
        self.declined = 0  # requests it could not serve (ModelError: bad or too little data)

    def _history(self) -> ModelHistory:
        return model_history(self.topology, self.endpoints)

    def handle(self, request: dict[str, Any]) -> RetrainResult | None:
        """Serve one request unless it was handled before; publishes the candidate."""
        keys = {request.get("id"), (request.get("data") or {}).get("dedup_key")} - {None}
        if keys & self.handled:
            log.info("retrain request %s: already handled, skipped", request.get("id"))
            return None
        history = self._history()
        if keys & history.request_ids():
            self.handled.update(keys)
            log.info("retrain request %s: a version on fleet.models has it", request.get("id"))
            return None
        result = retrain(request, self.topology, self.endpoints, self.private_key, history)
        publish_updates(self.endpoints, self.topology.cloud.models_topic, [result.update])
        self.handled.update(keys)
        self.results.append(result)
        metrics = result.update["metrics"]
        log.info(
            "published %s %s (parent %s): %d readings, rank corr %.3f, anomaly rate %.4f vs "
            "%.4f, %.1f s",
            result.update["model_name"],
            result.update["version"],
            result.update["parent_version"],
            len(result.training),
            metrics.get("rank_correlation", float("nan")),
            metrics.get("candidate_anomaly_rate", float("nan")),
            metrics.get("current_anomaly_rate", float("nan")),
            result.seconds,
        )
        return result

    def run(self, stop_event: threading.Event, poll: float = 0.5) -> None:
        """Consume requests and rollout events until ``stop_event`` is set."""
        from edgestream.core.broker import ensure_topics
        from edgestream.core.serde import AvroDeserializer

        retrain_topic = self.topology.cloud.retrain_topic
        rollout_topic = self.topology.forwarding.topics.rollout
        ensure_topics(self.endpoints.bootstrap, {retrain_topic: 1, rollout_topic: 1})
        decode = AvroDeserializer(self.endpoints.registry)
        requests, events = self._consumers(retrain_topic, rollout_topic)
        try:
            log.info(
                "retrainer: requests from %s (group %s), rollout events from %s, models to %s",
                retrain_topic,
                self.group,
                rollout_topic,
                self.topology.cloud.models_topic,
            )
            while not stop_event.is_set():
                self._serve_requests(requests, decode, stop_event, poll)
                fresh = [
                    decode(m.value()) for m in events.consume(1000, timeout=0) if m.error() is None
                ]
                if fresh or self.controller.needs_history:
                    self._roll_out(fresh)
        finally:
            requests.close()
            events.close()

    def _consumers(self, retrain_topic: str, rollout_topic: str) -> tuple[Any, Any]:
        """The requests consumer (from the group's committed offsets) and the rollout events
        one (every event, from the beginning, in a group of its own)."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        from edgestream.core.broker import consumer_config

        conf = consumer_config(
            self.endpoints.bootstrap,
            self.group,
            **{"enable.auto.commit": False, "fetch.wait.max.ms": 100},
        )
        conf.update(self.endpoints.client_settings)
        requests = Consumer(conf)
        events = Consumer({**conf, "group.id": f"{self.group}-rollout-{time.time_ns()}"})
        parts = [
            TopicPartition(retrain_topic, p, OFFSET_BEGINNING)
            for p in _partitions(requests, retrain_topic)
        ]
        committed = committed_offsets(requests, parts)
        requests.assign(
            [
                TopicPartition(
                    c.topic, c.partition, c.offset if c.offset >= 0 else OFFSET_BEGINNING
                )
                for c in committed
            ]
        )
        events.assign(
            [
                TopicPartition(rollout_topic, p, OFFSET_BEGINNING)
                for p in _partitions(events, rollout_topic)
            ]
        )
        return requests, events

    def _serve_requests(
        self, requests: Any, decode: Any, stop_event: threading.Event, poll: float
    ) -> None:
        """Handle the requests of one poll, committing each (a transient failure seeks back)."""
        from confluent_kafka import TopicPartition

        from edgestream.core.exceptions import ServiceUnavailable

        for msg in requests.consume(10, timeout=poll):
            if msg.error() is not None:
                continue
            try:
                self.handle(decode(msg.value()))
            except ServiceUnavailable as error:  # transient: the same request again
                log.warning("retrain request at offset %d: %s", msg.offset(), error)
                requests.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
                stop_event.wait(5.0)
                break
            except ModelError as error:  # a request we cannot serve (too few
                # samples, a pointer past the data, a model without a sidecar): the
                # cloud job's data, not our failure; one line, and on to the next
                self.declined += 1
                log.warning("retrain request at offset %d declined: %s", msg.offset(), error)
            except Exception:  # a bug must not stop the service either
                self.errors += 1
                log.exception("retrain request at offset %d failed", msg.offset())
            requests.commit(message=msg, asynchronous=False)

    def _roll_out(self, fresh: list[dict[str, Any]]) -> None:
        """Feed the controller new rollout events and the history; publish its actions."""
        self.controller.observe_events(fresh)
        self.controller.observe_history(self._history())
        actions = self.controller.actions()
        if actions:
            publish_updates(self.endpoints, self.topology.cloud.models_topic, actions)
            self.controller.published(actions)


def _partitions(consumer: Any, topic: str) -> list[int]:
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    return sorted(meta.partitions) if meta is not None and meta.partitions else [0]


def serve(
    topology: Topology,
    cloud_bootstrap: str,
    registry_url: str,
    stop_event: threading.Event,
    client_settings: dict[str, object] | None = None,
    private_key: Any = None,
) -> Retrainer:
    """Run the retrainer + rollout controller until ``stop_event`` (entry point of ``up``).

    The signing key is ``private_key`` or the one the topology's ``retraining.signing``
    names. Returns the retrainer (its ``results`` and ``controller.decisions``).
    """
    from edgestream.ml.signing import load_private_key

    endpoints = CloudEndpoints(cloud_bootstrap, registry_url, dict(client_settings or {}))
    key = private_key or load_private_key(topology.retraining.signing)
    retrainer = Retrainer(topology, endpoints, key)
    # scikit-learn takes 15-30 s to import on a busy 2-core gateway host: pay it while
    # waiting for the first request, not after it arrives
    threading.Thread(target=_preload_trainer, name="preload-sklearn", daemon=True).start()
    retrainer.run(stop_event)
    return retrainer


def _preload_trainer() -> None:
    # without the train extra the first request says what to install
    with contextlib.suppress(ImportError):
        import sklearn.neural_network  # noqa: F401
