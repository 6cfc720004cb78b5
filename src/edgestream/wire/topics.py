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
    "ALERTS_TOPIC",
    "CONTROL_TOPIC",
    "EDGE",
    "EDGE_TOPICS",
    "FLEET",
    "GATEWAY_TOPICS",
    "MODELS_TOPIC",
    "REPORTS_TOPIC",
    "ROLLOUT_TOPIC",
    "SAMPLES_TOPIC",
    "STATUS_TOPIC",
    "SUMMARIES_TOPIC",
]

ALERTS_TOPIC = "edge.alerts"  # AnomalyAlert, forwarded to fleet.alerts
SUMMARIES_TOPIC = "edge.summaries"  # WindowSummary, forwarded to fleet.summaries
SAMPLES_TOPIC = "edge.samples"  # sampled SensorReading, forwarded to fleet.samples
ROLLOUT_TOPIC = "edge.rollout"  # RolloutEvent, forwarded to fleet.rollout
MODELS_TOPIC = "edge.models"  # the forwarder's mirror of the cloud's fleet.models
CONTROL_TOPIC = "edge.control"  # operator commands, JSON: {"command": "metrics"}
STATUS_TOPIC = "edge.status"  # the worker's answers and the gateway's events, JSON

#: Every topic on a gateway's edge broker, by role.
EDGE = {
    "alerts": ALERTS_TOPIC,
    "summaries": SUMMARIES_TOPIC,
    "samples": SAMPLES_TOPIC,
    "control": CONTROL_TOPIC,
    "status": STATUS_TOPIC,
    "models": MODELS_TOPIC,
    "rollout": ROLLOUT_TOPIC,
}
#: The gateway's topics and their partition counts (the worker creates them, deploy plans them).
GATEWAY_TOPICS = dict.fromkeys(EDGE.values(), 1)
#: The edge topics the forwarder uplinks, by record kind.
EDGE_TOPICS = {
    "alert": ALERTS_TOPIC,
    "summary": SUMMARIES_TOPIC,
    "rollout": ROLLOUT_TOPIC,
    "sample": SAMPLES_TOPIC,
}

#: The forwarders' reports on the cloud broker (``forwarding.topics.reports``' default).
REPORTS_TOPIC = "fleet.forwarder"
_cloud = Cloud()
#: The cloud topics' default names, by role (a topology may rename each).
FLEET = {
    **ForwardTopics().model_dump(),
    "reports": REPORTS_TOPIC,
    "stats": _cloud.stats_topic,
    "retrain": _cloud.retrain_topic,
    "models": _cloud.models_topic,
    "dlq": _cloud.dlq_topic,
}
