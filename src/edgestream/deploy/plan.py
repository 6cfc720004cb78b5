"""What a topology deploys: topics per broker, schemas, processes per gateway, Flink jobs.

The plan is pure data computed from the topology alone (no broker is asked), so
``edgestream deploy TOPOLOGY --dry-run`` prints the same table every time for the same
topology. Brokers are named, not addressed: ``edge:<gateway>`` is the gateway's broker
(``gateways[].bootstrap``, else the embedded stack's broker of that name), ``cloud`` the cloud
broker (``forwarding.bootstrap``, else the embedded one).

>>> from edgestream.core.paths import topologies_dir
>>> from edgestream.core.topology import load_topology
>>> plan = build_plan(load_topology(topologies_dir() / "default.yaml", check_files=False))
>>> [t.name for t in plan.topics if t.broker == "cloud"][:3]
['fleet.alerts', 'fleet.summaries', 'fleet.samples']
>>> sorted({p.kind for p in plan.processes})
['edge-worker', 'flink-jobs', 'forwarder']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgestream.core.serde import subject_for
from edgestream.core.topology import Topology, format_duration
from edgestream.wire.topics import GATEWAY_TOPICS, REPORTS_TOPIC

__all__ = [
    "CLOUD",
    "FlinkJobSpec",
    "Plan",
    "ProcessSpec",
    "SchemaSpec",
    "TopicSpec",
    "build_plan",
    "env_references",
]

CLOUD = "cloud"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")  # ${NAME} or ${NAME:-default}
#: Cloud topic kind -> Avro record of its values (None: JSON, no registry subject).
CLOUD_RECORDS = {
    "alerts": "AnomalyAlert",
    "summaries": "WindowSummary",
    "samples": "SensorReading",
    "rollout": "RolloutEvent",
    "reports": "ForwarderReport",
    "stats": None,
    "retrain": "RetrainRequest",
    "models": "ModelUpdate",
}


@dataclass(frozen=True)
class TopicSpec:
    """A topic on one broker, with the partitions and configs it is created with."""

    broker: str  # "edge:<gateway>" or "cloud"
    name: str
    partitions: int
    configs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SchemaSpec:
    """A value schema to register: ``subject`` (``<topic>-value``) -> Avro record name."""

    subject: str
    record: str


@dataclass(frozen=True)
class ProcessSpec:
    """A long-running process: ``kind`` edge-worker / forwarder (per gateway) or flink-jobs."""

    name: str
    kind: str
    gateway: str | None
    args: tuple[str, ...]  # after ``edgestream``, shown in the plan (edgestream.core.commands
    # builds the whole command line of each target)


@dataclass(frozen=True)
class FlinkJobSpec:
    """A cloud Flink job and its settings, as one line."""

    name: str
    settings: str


@dataclass(frozen=True)
class Plan:
    """Everything a topology deploys."""

    topology: str
    fingerprint: str
    topics: tuple[TopicSpec, ...]
    schemas: tuple[SchemaSpec, ...]
    processes: tuple[ProcessSpec, ...]
    jobs: tuple[FlinkJobSpec, ...]
    brokers: dict[str, str | None] = field(default_factory=dict)  # name -> configured bootstrap

    def topics_on(self, broker: str) -> tuple[TopicSpec, ...]:
        return tuple(t for t in self.topics if t.broker == broker)


def edge_topics(topology: Topology, gateway_id: str) -> list[TopicSpec]:
    """The topics of a gateway's broker, with the sensor topics' partitions and configs."""
    broker = f"edge:{gateway_id}"
    specs = [TopicSpec(broker, name, parts) for name, parts in GATEWAY_TOPICS.items()]
    for dtype in topology.gateway(gateway_id).device_types:
        for topic in topology.topics_for(dtype):
            configs = tuple(sorted(topic.kafka_configs().items()))
            specs += [
                TopicSpec(broker, topic.name, topic.partitions, configs),
                TopicSpec(broker, topic.dlq, 1),
                TopicSpec(broker, topic.late, 1),
            ]
    return specs


def cloud_topics(topology: Topology) -> dict[str, str]:
    """Cloud topic kind -> topic name, from the topology."""
    fwd, cloud = topology.forwarding.topics, topology.cloud
    return {
        "alerts": fwd.alerts,
        "summaries": fwd.summaries,
        "samples": fwd.samples,
        "rollout": fwd.rollout,
        "reports": str(getattr(fwd, "reports", REPORTS_TOPIC)),
        "stats": cloud.stats_topic,
        "retrain": cloud.retrain_topic,
        "models": cloud.models_topic,
    }


def _cloud_topic(kind: str, name: str, parallelism: int) -> TopicSpec:
    # the high-volume streams get one partition per Flink source subtask; the model stream
    # keeps one partition (gateways apply updates in order) and its whole history
    wide = kind in ("alerts", "summaries", "samples", "stats")
    configs = (("retention.ms", "-1"),) if kind == "models" else ()
    return TopicSpec(CLOUD, name, parallelism if wide else 1, configs)


def _jobs(topology: Topology) -> tuple[FlinkJobSpec, ...]:
    jobs, cloud = topology.cloud.jobs, topology.cloud
    stats, drift, retrain = jobs.fleet_stats, jobs.drift, jobs.retrain
    where = cloud.jobmanager or "local MiniCluster"
    return (
        FlinkJobSpec(
            "fleet-stats",
            f"{format_duration(stats.window)} windows, lateness "
            f"{format_duration(stats.allowed_lateness)} -> {cloud.stats_topic} ({where})",
        ),
        FlinkJobSpec(
            "drift",
            f"{format_duration(drift.window)} windows, PSI > {drift.psi_major:g} major, "
            f"KS > {drift.ks_threshold:g}",
        ),
        FlinkJobSpec(
            "retrain-trigger",
            f"anomaly rate > {retrain.anomaly_rate_threshold:g}, cooldown "
            f"{format_duration(retrain.cooldown)} -> {cloud.retrain_topic}",
        ),
    )


def build_plan(topology: Topology) -> Plan:
    """The deployment plan of ``topology`` (deterministic: same topology, same plan)."""
    topics: list[TopicSpec] = []
    brokers: dict[str, str | None] = {}
    processes: list[ProcessSpec] = []
    for gateway in topology.gateways:
        brokers[f"edge:{gateway.id}"] = gateway.bootstrap
        topics += edge_topics(topology, gateway.id)
        processes.append(
            ProcessSpec(
                f"edge-{gateway.id}",
                "edge-worker",
                gateway.id,
                ("edge", "run", "--gateway", gateway.id),
            )
        )
        processes.append(
            ProcessSpec(
                f"forward-{gateway.id}",
                "forwarder",
                gateway.id,
                ("forward", "run", "--gateway", gateway.id),
            )
        )
    brokers[CLOUD] = topology.forwarding.bootstrap
    names = cloud_topics(topology)
    topics += [_cloud_topic(kind, name, topology.cloud.parallelism) for kind, name in names.items()]
    processes.append(ProcessSpec("cloud-jobs", "flink-jobs", None, ("cloud", "run")))
    subjects: dict[str, str] = {}
    for sensor in topology.sensors.topics:
        subjects[subject_for(sensor.name)] = sensor.schema_
    for kind, name in names.items():
        record = CLOUD_RECORDS[kind]
        if record is not None:
            subjects[subject_for(name)] = record
    return Plan(
        topology=topology.name,
        fingerprint=topology.fingerprint(),
        topics=tuple(topics),
        schemas=tuple(SchemaSpec(s, r) for s, r in subjects.items()),
        processes=tuple(processes),
        jobs=_jobs(topology),
        brokers=brokers,
    )


def env_references(topology: Topology) -> dict[str, bool]:
    """Environment variables the topology reads -> optional (it has a default)."""
    text = topology.source.read_text(encoding="utf-8") if topology.source else ""
    found: dict[str, bool] = {}
    for match in _ENV_REF.finditer(text):
        found[match.group(1)] = found.get(match.group(1), True) and match.group(2) is not None
    signing = topology.retraining.signing
    for name in (signing.key_env, signing.public_key_env):
        if name:
            found.setdefault(name, True)
    return found
