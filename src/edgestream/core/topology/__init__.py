"""Declarative topologies: one YAML file -> one typed, frozen, validated :class:`Topology`.

>>> from edgestream.core.topology import load_topology, Topology, TopologyError
>>> from edgestream.core.paths import topologies_dir
>>> topology = load_topology(topologies_dir() / "default.yaml", check_files=False)
>>> [g.id for g in topology.gateways]
['gw-1', 'gw-2']

Modules: :mod:`.fields` (durations, sizes, names, secrets), :mod:`.edge`, :mod:`.detection`,
:mod:`.forwarding`, :mod:`.cloud` (the sections), :mod:`.models` (the root), :mod:`.loader`,
:mod:`.checks` (cross-references), :mod:`.explain` (error messages), :mod:`.yamlsrc` (line
numbers), :mod:`.reference` (`docs/topology.md`, generated from the models).
"""

from edgestream.core.topology.errors import Problem, TopologyError
from edgestream.core.topology.fields import format_duration, parse_duration, parse_size
from edgestream.core.topology.loader import load_topology
from edgestream.core.topology.models import Topology

__all__ = [
    "Problem",
    "Topology",
    "TopologyError",
    "format_duration",
    "load_topology",
    "parse_duration",
    "parse_size",
]
