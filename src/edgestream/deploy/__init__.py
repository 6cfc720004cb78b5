"""Deploy a topology: the plan (topics, schemas, processes, Flink jobs), applied to brokers
and a registry with local supervised processes, or written as Kubernetes manifests or systemd
units.

>>> from edgestream.core.paths import topologies_dir
>>> from edgestream.core.topology import load_topology
>>> plan = build_plan(load_topology(topologies_dir() / "default.yaml", check_files=False))
>>> print(render_plan(plan).splitlines()[0])  # doctest: +ELLIPSIS
deployment plan of topology default (fingerprint ...)

The CLI ``edgestream deploy`` calls these functions.
"""

from edgestream.deploy.brokers import Change
from edgestream.deploy.exceptions import DeployError
from edgestream.deploy.k8s import K8sOptions, manifests, write_manifests
from edgestream.deploy.local import (
    apply_local,
    process_states,
    process_status,
    stop_local,
)
from edgestream.deploy.plan import Plan, build_plan
from edgestream.deploy.render import render_changes, render_plan, render_status
from edgestream.deploy.systemd import SystemdOptions, units, write_units

__all__ = [
    "Change",
    "DeployError",
    "K8sOptions",
    "Plan",
    "SystemdOptions",
    "apply_local",
    "build_plan",
    "manifests",
    "process_states",
    "process_status",
    "render_changes",
    "render_plan",
    "render_status",
    "stop_local",
    "units",
    "write_manifests",
    "write_units",
]
