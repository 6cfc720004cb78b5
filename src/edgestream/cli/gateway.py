"""Where a gateway's worker and forwarder run: options win, then the topology, then the
running embedded stack (``edgestream stack start``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.paths import home_dir

if TYPE_CHECKING:
    from edgestream.core.topology import Topology

__all__ = ["GatewayPlace", "gateway_data_dir", "gateway_place"]


def gateway_data_dir(gateway_id: str) -> Path:
    """A gateway's data dir when none is given: its worker's state and its forwarder's outbox."""
    return home_dir() / "gateways" / gateway_id


@dataclass(frozen=True)
class GatewayPlace:
    """A gateway of a loaded topology and the endpoints its processes use."""

    topology: Topology
    edge: str
    registry: str
    #: the cloud broker, resolved only for the forwarder
    cloud: str | None
    data_dir: Path


def gateway_place(
    topology_path: Path,
    gateway_id: str,
    *,
    edge: str | None = None,
    registry: str | None = None,
    data_dir: Path | None = None,
    cloud: str | None = None,
    forwarder: bool = False,
    edge_flag: str = "--bootstrap",
) -> GatewayPlace:
    """Resolve ``gateway_id`` of the topology; ``forwarder``: also the cloud broker.
    ``edge_flag`` is the option a user passes instead of the stack's edge broker."""
    from edgestream.core.stack import running_endpoints
    from edgestream.core.topology import load_topology

    topology = load_topology(topology_path)
    try:
        gateway = topology.gateway(gateway_id)
    except KeyError as error:
        raise EdgestreamError(str(error.args[0])) from None
    edge = edge or gateway.bootstrap
    registry = registry or topology.registry
    if forwarder:
        cloud = cloud or topology.forwarding.bootstrap
    if not edge or not registry or (forwarder and not cloud):
        stack = running_endpoints()
        stack_edge: dict[str, str] = stack["edge"]  # type: ignore[assignment]
        if not edge and gateway_id not in stack_edge:
            raise EdgestreamError(
                f"the embedded stack has no broker for {gateway_id}: start it with "
                f"`edgestream stack start --gateways N` or pass {edge_flag}"
            )
        edge = edge or stack_edge[gateway_id]
        registry = registry or str(stack["registry"])
        cloud = (cloud or str(stack["cloud"])) if forwarder else None
    return GatewayPlace(
        topology, str(edge), str(registry), cloud, data_dir or gateway_data_dir(gateway_id)
    )
