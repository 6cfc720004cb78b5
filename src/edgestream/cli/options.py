"""Options that several ``edgestream`` commands take, defined once.

Each is an ``Annotated`` type: a command writes ``registry: Registry = None`` and gets the
same flag, help and type as every other command that takes it. Options only one command
takes stay in that command's signature. Endpoint options left unset resolve the same way
everywhere: the option, then the topology, then the running embedded stack.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from edgestream.core.topology import Topology

__all__ = [
    "AnomalyRate",
    "CloudBootstrap",
    "CloudBroker",
    "DataDir",
    "Duration",
    "Gateway",
    "JobManager",
    "JsonLine",
    "JsonOnly",
    "LogLevel",
    "Mapping",
    "MetricsPort",
    "Quiet",
    "Rate",
    "Registry",
    "Seed",
    "ShippedTopology",
    "TopologyFile",
    "TopologyOption",
    "Workdir",
    "apply_loglevel",
    "load_or_shipped",
]

# -- where things run ---------------------------------------------------------------------------
Registry = Annotated[str | None, typer.Option("--registry", help="Schema registry URL.")]
#: the cloud broker of the commands that read the cloud side (alerts, query, dashboard)
CloudBroker = Annotated[str | None, typer.Option("--bootstrap", help="Cloud broker HOST:PORT.")]
#: the cloud broker of the processes and operator commands (forward, cloud, models, retrain)
CloudBootstrap = Annotated[
    str | None,
    typer.Option("--cloud-bootstrap", help="Cloud broker HOST:PORT[,...] (default: topology)."),
]
JobManager = Annotated[
    str | None,
    typer.Option(
        "--jobmanager",
        help="HOST:PORT of a Flink cluster's REST endpoint (default: "
        "topology cloud.jobmanager, else a local MiniCluster).",
    ),
]

# -- the topology -------------------------------------------------------------------------------
TopologyFile = Annotated[Path, typer.Argument(help="Topology YAML.", show_default=False)]
ShippedTopology = Annotated[
    Path | None, typer.Argument(help="Topology YAML (default: the shipped one).")
]
TopologyOption = Annotated[
    Path | None,
    typer.Option("--topology", "-t", help="Topology YAML (default: the shipped one)."),
]


def load_or_shipped(path: Path | None, *, check_files: bool = True) -> Topology:
    """The topology at ``path``, or the shipped default when the option is not given."""
    from edgestream.core.topology import load_topology
    from edgestream.loop.up import default_topology

    return load_topology(path or default_topology(), check_files=check_files)


# -- a gateway's processes ----------------------------------------------------------------------
Gateway = Annotated[str, typer.Option("--gateway", "-g", help="Gateway id from the topology.")]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Gateway data dir: state and outbox (default $EDGESTREAM_HOME/gateways/GATEWAY).",
    ),
]
MetricsPort = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        help="Prometheus /metrics port (0: any free one, written to DATA_DIR/<process>"
        ".metrics-port; -1: off). Default: $EDGESTREAM_METRICS_PORT, else 0.",
    ),
]
LogLevel = Annotated[str, typer.Option("--loglevel", help="debug, info, warning, error.")]


def apply_loglevel(loglevel: str) -> None:
    """Log at ``loglevel`` to stderr, as every edgestream process does (the registry
    client's per-request lines stay at warning)."""
    logging.basicConfig(
        level=getattr(logging, loglevel.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# -- output -------------------------------------------------------------------------------------
#: progress and tables first, then the result as the last line (for ``| tail -1 | jq``)
JsonLine = Annotated[bool, typer.Option("--json", help="Last stdout line: one JSON object.")]
#: nothing but the JSON
JsonOnly = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]

# -- simulated load -----------------------------------------------------------------------------
Rate = Annotated[float, typer.Option("--rate", help="Readings per second per device.")]
AnomalyRate = Annotated[
    float, typer.Option("--anomaly-rate", help="Expected fraction of anomalous readings.")
]
Seed = Annotated[
    int, typer.Option("--seed", help="Simulator seed (same seed and start time: same records).")
]
Duration = Annotated[
    float | None,
    typer.Option("--duration", help="Stop after this many seconds (default: until Ctrl-C)."),
]
Workdir = Annotated[
    Path | None,
    typer.Option("--workdir", help="Keep the stack, state and logs here (default: temp, removed)."),
]
Mapping = Annotated[
    list[str] | None,
    typer.Option("--map", help="COLUMN=CHANNEL: a history file column's channel (repeatable)."),
]
