"""Detection quality of the code the gateway runs: features -> ONNX -> IncidentTracker.

``ml/evaluate.py``'s fleet evaluation judges the *model* with its own simple incident rule
(a gap in readings). Here the alerts come from :class:`IncidentTracker` with a topology's
anomaly settings, fed like :class:`TopicPipeline` feeds it (``load_model`` + ``features_for``,
micro-batches in arrival order, late and out-of-order readings included), and are matched
against the simulator's labelled episodes two ways:

* **incident spans** (:func:`incidents_from_alerts`): one incident per ``incident_id`` from
  its ``first_ts`` to the last ``last_ts`` of its alerts. An incident stays open until
  ``cooldown`` after its last anomalous reading, so several episodes can share one span:
  the span then "detects" an episode no alert ever named;
* **per alert** (:func:`alert_spans`): each ``open``/``update`` alert at its triggering
  readings' timestamps: an episode is detected only when an alert names one of its readings.

Seeds 31, 32 and 33 were fixed before any result was seen (training uses 101, 102 and 7;
``tests/test_ml`` uses 11-13). The target is checked on the pooled episodes of the three.

Measured (pooled over the seeds; per seed in the tests' docstrings):

                                        spans            per alert
                                        recall  prec.    recall  prec.
default.yaml (cooldown 2m, update 30s)  0.932   0.960    0.759   0.933
RECOMMENDED (cooldown 30s, update 2s)   0.961   0.956    0.958   0.923

Why the default falls short: at the simulator's anomaly rate a device has an episode every
~2 minutes, so a 2-minute cooldown chains a device's episodes into one long incident, and
the 30 s update interval names few of them (per-alert recall 0.76); the span view hides
that, and still misses episodes near the end of a run, whose readings are only reported by
an update or the ``resolved`` alert that has not come yet. The update interval is the knob
(settings were chosen on seeds 41-45, then measured once on 31-33). What remains is the
model (short ``stuck`` episodes on quantised channels score below the threshold) and the
reefer door mute (episodes injected while a door is open are muted by design: without the
mute recall is 0.987 but precision drops to 0.943, seed 33 to 0.873).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edgestream.core.topology import Topology, load_topology
from edgestream.core.topology.detection import AnomalyRule, AnomalySpec, Suppression
from edgestream.edge.incidents import IncidentTracker
from edgestream.edge.models import features_for, load_model
from edgestream.ml.evaluate import EventMetrics, alert_spans, event_metrics, incidents_from_alerts
from edgestream.ml.nab import fit_nab
from edgestream.ml.scorer import OnnxScorer
from edgestream.sim import Message, ReplaySpec, SimConfig, Simulator
from edgestream.sim.labels import AnomalyLabel

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOPOLOGY = ROOT / "topologies" / "default.yaml"
NAB = ROOT / "tests" / "data" / "nab"
SEEDS = (31, 32, 33)  # fixed before evaluation; never used for training or tuning
START = 1_718_000_000_000  # the training data's start (ml/train.py); a seed shifts it by hours
TARGET_RECALL, TARGET_PRECISION = 0.95, 0.90
TOLERANCE_MS = 300  # 3 readings at 10 Hz, as ml.evaluate.evaluate_fleet
BATCH = 500  # readings per micro-batch, in arrival order
#: Suppression that meets the targets (proposed for topologies/default.yaml; the rules and
#: the reefer door mute stay as they are).
RECOMMENDED = Suppression(cooldown=30_000, update_interval=2_000)  # default.yaml's
CHAINING = Suppression(cooldown=120_000, update_interval=30_000)  # its former setting


def sim_config(seed: int, **changes: Any) -> SimConfig:
    """20 devices (pumps and reefers), 10 Hz, 10 min, anomaly rate 0.01, 2% late."""
    params: dict[str, Any] = dict(
        devices=20,
        rate=10.0,
        duration=600.0,
        seed=seed,
        start_time=START + seed * 3_600_000,
        anomaly_rate=0.01,
        late_fraction=0.02,
        labels=None,
    )
    params.update(changes)
    return SimConfig(**params)


def with_suppression(topology: Topology, suppression: Suppression) -> Topology:
    anomaly = topology.anomaly.model_copy(update={"suppression": suppression})
    return topology.model_copy(update={"anomaly": anomaly})


# -- the gateway's detection path, offline -----------------------------------------------------


@dataclass
class TopicStream:
    """One (gateway, sensor topic): its readings scored batch by batch, as TopicPipeline
    scores them, ready to be fed to an IncidentTracker (``process`` arguments)."""

    gateway: str
    device_type: str
    threshold: float
    batches: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass
class ScoredRun:
    streams: list[TopicStream]
    episodes: list[AnomalyLabel]
    readings: int

    def alerts(self, anomaly: AnomalySpec) -> list[dict[str, Any]]:
        """The AnomalyAlert dicts the gateways emit with these anomaly settings."""
        out: list[dict[str, Any]] = []
        for stream in self.streams:
            thresholds = {stream.device_type: stream.threshold}
            tracker = IncidentTracker(anomaly, stream.gateway, thresholds)
            for batch in stream.batches:
                out += tracker.process(*batch)
        return out

    def scores(self) -> dict[tuple[str, int], tuple[int, float]]:
        """(device, seq) -> (ts, score) of every reading."""
        got = {}
        for stream in self.streams:
            for ids, _, _, ts, seq, scores, *_ in stream.batches:
                for row in zip(ids, seq.tolist(), ts.tolist(), scores.tolist(), strict=True):
                    got[row[0], row[1]] = (row[2], row[3])
        return got


def score_messages(
    topology: Topology, messages: list[Message], episodes: list[AnomalyLabel], batch: int = BATCH
) -> ScoredRun:
    """Validated SensorReading values through the pipeline's features and model, per gateway
    (by site) and sensor topic, in micro-batches of ``batch`` in arrival order."""
    gateway_of = {site: g.id for g in topology.gateways for site in g.sites}
    topics = {t.name: t for t in topology.sensors.topics}
    pending: dict[tuple[str, str], list[dict[str, Any]]] = {}
    state: dict[tuple[str, str], tuple[TopicStream, Any, OnnxScorer, list[int], tuple]] = {}
    models = {t: load_model(topology, t) for t in topology.device_types}

    def flush(key: tuple[str, str]) -> None:
        rows = pending.pop(key, [])
        if not rows:
            return
        stream, features, scorer, cols, channels = state[key]
        ids = [r["device_id"] for r in rows]
        ts = np.array([r["ts"] for r in rows], dtype=np.int64)
        values = np.array([[r["channels"][c] for c in channels] for r in rows], dtype=float)
        scores = scorer.score(features.transform(ids, ts, values[:, cols]))
        seq = np.array([r["seq"] for r in rows], dtype=np.int64)
        sites, types = [r["site"] for r in rows], [r["device_type"] for r in rows]
        stream.batches.append(
            (ids, sites, types, ts, seq, scores, values, channels, scorer.version)
        )

    for message in messages:
        key = (gateway_of[message.value["site"]], message.topic)
        if key not in state:
            topic = topics[message.topic]
            scorer, threshold = models[topic.device_type]
            channels = tuple(topic.channels)
            cols = [channels.index(c) for c in scorer.meta.channels or scorer.meta.inputs]
            stream = TopicStream(key[0], topic.device_type, threshold)
            state[key] = (stream, features_for(scorer.meta), scorer, cols, channels)
        pending.setdefault(key, []).append(message.value)
        if len(pending[key]) >= batch:
            flush(key)
    for key in list(pending):
        flush(key)
    return ScoredRun([s[0] for s in state.values()], episodes, len(messages))


def simulate_and_score(topology: Topology, config: SimConfig) -> ScoredRun:
    sim = Simulator(config)
    messages = list(sim.messages())
    return score_messages(topology, messages, sim.labels().anomalies)


# -- metrics -----------------------------------------------------------------------------------


@dataclass
class Quality:
    """Event metrics of one run's alerts: incident spans and per-alert."""

    spans: EventMetrics
    alerts: EventMetrics

    @classmethod
    def of(cls, episodes: list[AnomalyLabel], alerts: list[dict[str, Any]]) -> Quality:
        return cls(
            event_metrics(episodes, incidents_from_alerts(alerts), TOLERANCE_MS),
            event_metrics(episodes, alert_spans(alerts), TOLERANCE_MS),
        )

    def line(self) -> str:
        s, a = self.spans, self.alerts
        return (
            f"spans R {s.recall:.3f} P {s.precision:.3f} ({s.detected}/{s.episodes} episodes, "
            f"{s.false_alerts} false of {s.incidents} incidents) | alerts R {a.recall:.3f} "
            f"P {a.precision:.3f} ({a.detected}/{a.episodes}, {a.false_alerts} false of "
            f"{a.incidents} open/update alerts)"
        )


def pooled(metrics: list[EventMetrics]) -> EventMetrics:
    """Metrics of several runs together (their episodes and incidents summed)."""
    kinds: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    for m in metrics:
        for kind, row in m.per_kind.items():
            kinds[kind] += int(row["episodes"])
            hits[kind] += int(row["detected"])
    episodes = sum(m.episodes for m in metrics)
    incidents = sum(m.incidents for m in metrics)
    false = sum(m.false_alerts for m in metrics)
    detected = sum(m.detected for m in metrics)
    return EventMetrics(
        recall=detected / episodes if episodes else 1.0,
        precision=1 - false / incidents if incidents else 1.0,
        episodes=episodes,
        detected=detected,
        incidents=incidents,
        false_alerts=false,
        per_kind={
            k: {"episodes": n, "detected": hits[k], "recall": round(hits[k] / n, 6)}
            for k, n in sorted(kinds.items())
        },
    )


def report(title: str, runs: dict[int, Quality]) -> Quality:
    print(f"\n{title}")
    for seed, q in runs.items():
        print(f"  seed {seed}: {q.line()}")
    total = Quality(
        pooled([q.spans for q in runs.values()]), pooled([q.alerts for q in runs.values()])
    )
    print(f"  pooled : {total.line()}")
    for kind, row in total.spans.per_kind.items():
        strict = total.alerts.per_kind[kind]
        print(
            f"    {kind:13s} spans {row['detected']}/{row['episodes']} ({row['recall']:.3f})"
            f"  alerts {strict['detected']}/{strict['episodes']} ({strict['recall']:.3f})"
        )
    return total


# -- offline: simulator seeds through the gateway path ---------------------------------------


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(DEFAULT_TOPOLOGY)


@pytest.fixture(scope="module")
def scored(topology: Topology) -> dict[int, ScoredRun]:
    return {seed: simulate_and_score(topology, sim_config(seed)) for seed in SEEDS}


def _assert_targets(total: Quality) -> None:
    for view in (total.spans, total.alerts):
        assert view.recall >= TARGET_RECALL, view.as_dict()
        assert view.precision >= TARGET_PRECISION, view.as_dict()


def test_default_topology_meets_the_detection_targets(topology, scored) -> None:
    """default.yaml's suppression (cooldown 30s, update_interval 2s; chosen on seeds 41-45).
    With the former cooldown 2m / update 30s a device's episodes chained into one incident:
    pooled span recall 0.932, per-alert recall 0.759 on these seeds."""
    runs = {
        seed: Quality.of(run.episodes, run.alerts(topology.anomaly)) for seed, run in scored.items()
    }
    total = report("default.yaml anomaly settings", runs)
    _assert_targets(total)


def test_recommended_suppression_meets_the_detection_targets(topology, scored) -> None:
    """Measured per seed (spans R/P | per-alert R/P): 31: 0.983/0.989 | 0.974/0.963;
    32: 0.941/0.967 | 0.941/0.923; 33: 0.962/0.904 | 0.962/0.869. Per seed the targets are
    not always met (seed 32: 7 of 118 episodes missed, 4 of them muted reefer doors; seed
    33: 13 false of 99 alerts, among them late readings scored against a newer history);
    the per-seed floors below are the measured values, not the targets."""
    anomaly = with_suppression(topology, RECOMMENDED).anomaly
    runs = {seed: Quality.of(run.episodes, run.alerts(anomaly)) for seed, run in scored.items()}
    total = report("recommended suppression (cooldown 30s, update_interval 2s)", runs)
    _assert_targets(total)
    # the span view is no longer inflated: per alert finds (almost) the same episodes
    assert total.spans.detected - total.alerts.detected <= 0.01 * total.spans.episodes
    for q in runs.values():
        assert q.spans.recall >= 0.94 and q.alerts.recall >= 0.94, q.line()
        assert q.spans.precision >= 0.90 and q.alerts.precision >= 0.86, q.line()
    assert all(row["recall"] >= 0.9 for row in total.spans.per_kind.values())


def test_cooldown_chaining_inflates_span_recall(topology, scored) -> None:
    """With a 2-minute cooldown an incident covers many episodes that no alert names: span
    recall is far above per-alert recall (0.932 vs 0.759 pooled)."""
    anomaly = with_suppression(topology, CHAINING).anomaly
    runs = {seed: Quality.of(run.episodes, run.alerts(anomaly)) for seed, run in scored.items()}
    spans = pooled([q.spans for q in runs.values()])
    strict = pooled([q.alerts for q in runs.values()])
    assert spans.incidents < 0.5 * spans.episodes  # 126 incidents for 311 episodes
    assert spans.detected - strict.detected >= 0.15 * spans.episodes


def test_alerts_name_their_readings_with_deterministic_ids(topology, scored) -> None:
    run = scored[SEEDS[0]]
    alerts = run.alerts(with_suppression(topology, RECOMMENDED).anomaly)
    scores = run.scores()
    thresholds = {s.device_type: s.threshold for s in run.streams}
    versions = {t: load_model(topology, t)[0].version for t in topology.device_types}
    _check_alert_contract(alerts, scores, thresholds, versions)
    assert alerts == run.alerts(with_suppression(topology, RECOMMENDED).anomaly), "replayable"


def _check_alert_contract(
    alerts: list[dict[str, Any]],
    scores: dict[tuple[str, int], tuple[int, float]],
    thresholds: dict[str, float],
    versions: dict[str, str],
) -> None:
    opens: Counter[str] = Counter()
    for alert in alerts:
        device = alert["device_id"]
        number = alert["alert_id"].rsplit("|", 1)[1]
        gateway, dev, rule, first = alert["incident_id"].split("|")
        assert (gateway, dev) == (alert["gateway_id"], device)
        assert int(first) == alert["first_ts"] and rule in alert["rule"]
        assert alert["alert_id"] == f"{alert['incident_id']}|{number}"
        assert alert["model_version"] == versions[alert["device_type"]]
        if alert["status"] == "resolved":
            assert number == "resolved" and not alert["readings"]
            continue
        opens[alert["incident_id"]] += alert["status"] == "open"
        assert (number == "0") == (alert["status"] == "open") and number.isdigit()
        assert alert["readings"], "an alert names its triggering readings"
        for reading in alert["readings"]:
            ts, score = scores[device, reading["seq"]]
            assert reading["ts"] == ts and reading["score"] == score
            assert score > thresholds[alert["device_type"]]
        assert alert["readings"][-1]["ts"] == alert["ts"]
    incidents = {a["incident_id"] for a in alerts}
    assert set(opens) == incidents and set(opens.values()) == {1}, "one open alert per incident"


def test_detection_does_not_depend_on_micro_batching(topology) -> None:
    """The worker's micro-batches can be tiny (take_events within 20 ms): one late reading
    alone is a batch. The alerts must be the same as with large batches."""
    sim = Simulator(sim_config(SEEDS[0], devices=4, duration=60.0, late_fraction=0.1))
    messages = list(sim.messages())
    anomaly = with_suppression(topology, RECOMMENDED).anomaly
    want = score_messages(topology, messages, []).alerts(anomaly)
    for batch in (1, 3):
        assert score_messages(topology, messages, [], batch).alerts(anomaly) == want, batch


# -- NAB machine_temperature through the gateway path ------------------------------------------


def test_nab_machine_temperature_through_the_gateway_rules() -> None:
    """The NAB series replayed by the simulator as one device, scored by a model fitted as
    ``evaluate_nab`` fits it, incidents by IncidentTracker.

    Measured: windows #2 and #4 of 4 found (the sensor drop to ~2 degC, the failure) with
    every setting. NAB samples every 5 minutes, so default.yaml's 2-minute cooldown makes
    every anomalous reading its own incident: 463 incidents, 7 of them false. With a cooldown
    of 30 minutes or more (6+ readings): 4 incidents, 2 false (the offline rule's result).
    """
    csv, windows = NAB / "machine_temperature_system_failure.csv", NAB / "combined_windows.json"
    model = fit_nab(csv, windows)
    replay = ReplaySpec(path=csv, device_id="nab-machine-1", windows=windows)
    sim = Simulator(SimConfig(replay=replay, duration=None, labels=None))
    messages = list(sim.messages())
    episodes = sim.labels().anomalies
    assert len(episodes) == 4 and len(messages) == len(model.ts)
    scorer = OnnxScorer.load(model.blob, model.meta)
    features = features_for(scorer.meta)
    ids = [m.value["device_id"] for m in messages]
    ts = np.array([m.value["ts"] for m in messages], dtype=np.int64)
    seq = np.array([m.value["seq"] for m in messages], dtype=np.int64)
    values = np.array([[m.value["channels"]["value"]] for m in messages])
    cuts = range(0, len(messages), BATCH)
    scores = np.concatenate(
        [
            scorer.score(
                features.transform(ids[i : i + BATCH], ts[i : i + BATCH], values[i : i + BATCH])
            )
            for i in cuts
        ]
    )
    assert np.array_equal(scores, model.scores), "the gateway path scores as the offline fit"
    default = load_topology(DEFAULT_TOPOLOGY).anomaly.suppression
    print("\nNAB machine_temperature (4 labelled windows):")
    measured = {}
    for name, suppression in (
        ("default.yaml (cooldown 2m)", default),
        ("cooldown 30m, update 1h", Suppression(cooldown=1_800_000, update_interval=3_600_000)),
    ):
        spec = AnomalySpec(rules=(AnomalyRule(name="nab"),), suppression=suppression)
        tracker = IncidentTracker(spec, "gw-nab", {"replay": model.threshold})
        alerts = []
        for i in cuts:
            sl = slice(i, i + BATCH)
            n = len(ids[sl])
            alerts += tracker.process(
                ids[sl], ["site-1"] * n, ["replay"] * n, ts[sl], seq[sl], scores[sl], values[sl],
                ("value",), scorer.version,
            )  # fmt: skip
        incidents = incidents_from_alerts(alerts)
        found = [
            k
            for k, ep in enumerate(episodes)
            if any(x.first_ts <= ep.end_ts and x.last_ts >= ep.start_ts for x in incidents)
        ]
        m = event_metrics(episodes, incidents)
        measured[name] = (found, m.incidents, m.false_alerts)
        print(
            f"  {name}: windows found {found} ({len(found)}/4), {m.incidents} incidents, "
            f"{m.false_alerts} false alerts"
        )
    assert measured["default.yaml (cooldown 2m)"] == ([1, 3], 463, 7)
    assert measured["cooldown 30m, update 1h"] == ([1, 3], 4, 2)


# -- through the real worker -------------------------------------------------------------------

WORKER_SEED = 34  # fixed before the run; not used in training, tuning or the offline tests
GATEWAY = "gw-det"


def write_detection_topology(path: Path, suppression: Suppression) -> Path:
    """default.yaml with one gateway for all three sites and the given suppression."""
    topo = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    topo["gateways"] = [
        {"id": GATEWAY, "sites": ["site-1", "site-2", "site-3"], "device_types": ["pump", "reefer"]}
    ]
    for spec in topo["models"].values():
        spec["path"] = str((DEFAULT_TOPOLOGY.parent / spec["path"]).resolve())
    # the readings start at a fixed time in 2024: no age limit (the default is a week)
    topo["sensors"]["validation"]["max_age"] = None
    topo["anomaly"]["suppression"] = {
        "cooldown": f"{suppression.cooldown}ms",
        "update_interval": f"{suppression.update_interval}ms",
    }
    path.write_text(yaml.safe_dump(topo, sort_keys=False))
    return path


@pytest.mark.integration
@pytest.mark.slow
def test_detection_through_the_real_worker(tmp_path: Path) -> None:
    """Real embedded broker and registry, the real worker subprocess, the simulator producing
    5 minutes of 20 devices; alerts read back from ``edge.alerts`` and decoded with our
    AvroDeserializer. They equal the offline path's alerts (so the offline numbers are the
    gateway's), meet the targets on the labels file, and keep the alert contract.

    The start time is fixed (in the past: the topology sets ``max_age: null``, no age limit),
    so every run sees the same data.
    Measured: spans R 0.983 P 0.976 (57/58 episodes, 1 false of 41 incidents); per alert
    R 0.966 P 0.984 (56/58, 1 false of 62). Fails while an agent crash (the FeatureExtractor
    bug, see test_detection_does_not_depend_on_micro_batching) loses a batch: that happens
    when a micro-batch holds only late readings, which depends on timing."""
    from edgestream.core.broker import ensure_topics
    from edgestream.core.offsets import exact_end_offsets
    from edgestream.core.serde import AvroDeserializer
    from edgestream.core.stack import Stack
    from edgestream.edge.config import edge_topics
    from edgestream.loop.watch import total
    from edgestream.sim import read_labels, simulate
    from edgestream.wire.topics import ALERTS_TOPIC
    from tests.support import gateway as gr

    path = write_detection_topology(tmp_path / "topology.yaml", RECOMMENDED)
    topology = load_topology(path)
    config = sim_config(
        WORKER_SEED,
        duration=300.0,
        labels=tmp_path / "labels.jsonl",
        fast=True,
    )
    sim = Simulator(config)
    expected = score_messages(topology, list(sim.messages()), [])
    want = {a["alert_id"]: a for a in expected.alerts(topology.anomaly)}

    stack = Stack(tmp_path / "stack")
    ends = stack.start(gateways=1).endpoints()
    bootstrap, registry = ends["edge"]["gw-1"], str(ends["registry"])
    worker = gr.Worker(path, GATEWAY, bootstrap, registry, tmp_path / "gw")
    sensor_topics = [t.name for d in topology.device_types for t in topology.topics_for(d)]
    try:
        ensure_topics(bootstrap, edge_topics(topology, GATEWAY))
        simulate(config, bootstrap=bootstrap, registry=registry)
        # every record the simulator produced, counted on the broker (fresh topics: ends)
        produced = sum(sum(exact_end_offsets(bootstrap, t).values()) for t in sensor_topics)
        assert produced > 0
        worker.start()
        # done when: every record taken in (readings + DLQ on the metrics page, counted after
        # the batch's alerts went to the producer); the worker's own alert count since then
        # is final; the broker confirmed that many (edgestream_alerts_total). Only then is
        # the alerts topic complete, and anything extra would be on it.
        gr.wait_processed(worker, tmp_path / "gw", produced, 300)
        counts = gr.ask_counts(bootstrap, GATEWAY, worker, 60)
        emitted = sum(c["alerts"] for c in counts.values())
        gr.wait_metrics(
            worker,
            tmp_path / "gw",
            lambda page: total(page, "edgestream_alerts_total") == emitted,
            60,
            f"the broker confirmed the {emitted} alerts",
        )
        raw = gr.read_topic(bootstrap, ALERTS_TOPIC)
        assert len(raw) == emitted, (len(raw), emitted)
        assert worker.alive(), worker.log_text()[-3000:]
        decode = AvroDeserializer(registry)
        alerts = [decode(m.value()) for m in raw]
    finally:
        code = worker.stop()
        stack.stop()
    assert code == 0, worker.log_text()[-3000:]
    log = worker.log_text()
    assert "Crashed" not in log, f"an agent crashed (see FeatureExtractor bug):\n{log[-3000:]}"
    assert [m.key().decode() for m in raw] == [a["alert_id"] for a in alerts], "keyed by id"
    assert len({a["alert_id"] for a in alerts}) == len(alerts), "no duplicates without a crash"
    got = {a["alert_id"]: a for a in alerts}
    assert got.keys() == want.keys()
    for alert_id, alert in got.items():
        assert {k: v for k, v in alert.items() if k not in ("emitted_at", "gateway_seq")} == {
            k: v for k, v in want[alert_id].items() if k not in ("emitted_at", "gateway_seq")
        }, alert_id

    labels = read_labels(config.labels)
    quality = Quality.of(labels.anomalies, alerts)
    report(f"real worker, seed {WORKER_SEED}, 5 min", {WORKER_SEED: quality})
    assert quality.spans.episodes >= 40
    _assert_targets(quality)
    thresholds = {s.device_type: s.threshold for s in expected.streams}
    versions = {t: load_model(topology, t)[0].version for t in topology.device_types}
    _check_alert_contract(alerts, expected.scores(), thresholds, versions)
