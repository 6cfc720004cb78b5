"""Sensor simulator: a deterministic fleet (or a CSV replay) producing to Kafka, with labels.

>>> cfg = SimConfig(devices=2, rate=1.0, duration=10, seed=3, start_time=0, labels=None)
>>> [m.value["device_id"] for m in Simulator(cfg).messages()][:4]
['pump-0001', 'reefer-0001', 'pump-0001', 'reefer-0001']
"""

from edgestream.sim.config import ANOMALY_KINDS, ReplaySpec, SimConfig, parse_start_time
from edgestream.sim.devices import DEVICE_TYPES
from edgestream.sim.exceptions import ProduceError, ReplayError, SimConfigError, SimError
from edgestream.sim.labels import Labels, read_labels, write_labels
from edgestream.sim.producer import SimProgress, SimResult, simulate
from edgestream.sim.schedule import Message
from edgestream.sim.simulator import Simulator

__all__ = [
    "ANOMALY_KINDS",
    "DEVICE_TYPES",
    "Labels",
    "Message",
    "ProduceError",
    "ReplayError",
    "ReplaySpec",
    "SimConfig",
    "SimConfigError",
    "SimError",
    "SimProgress",
    "SimResult",
    "Simulator",
    "parse_start_time",
    "read_labels",
    "simulate",
    "write_labels",
]
