"""Where the cloud side runs: the cloud broker and the schema registry a user command talks to.

Options win, then the topology (``forwarding.bootstrap``, ``registry``), then the running
embedded stack (``edgestream stack start``). Alerts, query and deploy resolve them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgestream.core.topology import Topology

__all__ = ["CloudEndpoints", "cloud_endpoints"]


@dataclass(frozen=True)
class CloudEndpoints:
    """The cloud broker (``host:port[,...]``), the registry URL and extra client settings
    (TLS/SASL of the topology's ``forwarding.security``, secrets included: never print them)."""

    bootstrap: str
    registry: str
    client_settings: dict[str, object] = field(default_factory=dict, repr=False)


def cloud_endpoints(
    bootstrap: str | None = None,
    registry: str | None = None,
    topology: Topology | None = None,
) -> CloudEndpoints:
    """Resolve the cloud endpoints (see the module doc); a one-line error if nothing runs."""
    settings: dict[str, object] = {}
    if topology is not None:
        if bootstrap is None and topology.forwarding.bootstrap is not None:
            from edgestream.core.security import resolve_security

            bootstrap = topology.forwarding.bootstrap
            settings = resolve_security(topology).client_config()
        registry = registry or topology.registry
    if bootstrap is None or registry is None:
        from edgestream.core.stack import running_endpoints

        found = running_endpoints()
        bootstrap = bootstrap or str(found["cloud"])
        registry = registry or str(found["registry"])
    return CloudEndpoints(bootstrap, registry, settings)
