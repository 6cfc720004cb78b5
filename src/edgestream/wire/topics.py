"""The one table of topic names: the gateway's topics on its edge broker, and the cloud topics.

The edge names are fixed (every gateway uses them); the cloud names are a topology's choice
(``forwarding.topics``, ``cloud.*_topic``), and :data:`FLEET` names their defaults, taken from
the topology model itself so there is one place that spells them. A sensor's own topics
(``sensors.<name>``, its ``.dlq`` and ``.late``) are named in its topology.

>>> EDGE_TOPICS["alert"], FLEET["alerts"]
('edge.alerts', 'fleet.alerts')
>>> sorted(GATEWAY_TOPICS) == sorted(EDGE.values())
True
"""

from __future__ import annotations

from edgestream.core.topology.cloud import Cloud
from edgestream.core.topology.forwarding import ForwardTopics

__all__ = [
    "ALERTS",
    "CONTROL",
    "EDGE",
    "EDGE_TOPICS",
    "FLEET",
    "GATEWAY_TOPICS",
    "MODELS",
    "REPORTS",
    "ROLLOUT",
    "SAMPLES",
    "STATUS",
    "SUMMARIES",
]

ALERTS = "edge.alerts"  # AnomalyAlert, forwarded to fleet.alerts
SUMMARIES = "edge.summaries"  # WindowSummary, forwarded to fleet.summaries
SAMPLES = "edge.samples"  # sampled SensorReading, forwarded to fleet.samples
ROLLOUT = "edge.rollout"  # RolloutEvent, forwarded to fleet.rollout
MODELS = "edge.models"  # the forwarder's mirror of the cloud's fleet.models
CONTROL = "edge.control"  # operator commands, JSON: {"command": "metrics"}
STATUS = "edge.status"  # the worker's answers and the gateway's events, JSON

#: Every topic on a gateway's edge broker, by role.
EDGE = {
    "alerts": ALERTS,
    "summaries": SUMMARIES,
    "samples": SAMPLES,
    "control": CONTROL,
    "status": STATUS,
    "models": MODELS,
    "rollout": ROLLOUT,
}
#: The gateway's topics and their partition counts (the worker creates them, deploy plans them).
GATEWAY_TOPICS = dict.fromkeys(EDGE.values(), 1)
#: The edge topics the forwarder uplinks, by record kind.
EDGE_TOPICS = {"alert": ALERTS, "summary": SUMMARIES, "rollout": ROLLOUT, "sample": SAMPLES}

#: The forwarders' reports on the cloud broker (``forwarding.topics.reports``' default).
REPORTS = "fleet.forwarder"
_cloud = Cloud()
#: The cloud topics' default names, by role (a topology may rename each).
FLEET = {
    **ForwardTopics().model_dump(),
    "reports": REPORTS,
    "stats": _cloud.stats_topic,
    "retrain": _cloud.retrain_topic,
    "models": _cloud.models_topic,
    "dlq": _cloud.dlq_topic,
}
