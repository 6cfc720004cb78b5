"""systemd units of a topology, for gateways that run without Kubernetes: one service per
process of the deployment plan (gateway worker and forwarder per gateway, the Flink jobs), each
running the exact command the local target runs, and a target that groups them.

* ``edgestream-<topology>-<process>.service``: ``Restart=on-failure`` after ``RestartSec``,
  at most ``StartLimitBurst`` starts within ``StartLimitIntervalSec`` (then systemd gives up
  and says so in ``systemctl status``), ``MemoryMax`` / ``CPUQuota`` per kind of process,
  ``WorkingDirectory`` the topology's folder, ``EDGESTREAM_HOME`` and the data dirs as the
  local target has them, and the variables the topology reads (secrets) from an
  ``EnvironmentFile`` that is never written here: ``<prefix>.env.example`` lists their names.
* ``edgestream-<topology>.target``: ``systemctl start`` it to start them all.

Brokers and registry are the topology's (``gateways[].bootstrap``, ``forwarding.bootstrap``,
``registry``), else the addresses given in :class:`SystemdOptions`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from edgestream.core.topology import Topology
from edgestream.deploy.brokers import Targets
from edgestream.deploy.exceptions import DeployError
from edgestream.deploy.local import process_argv, run_dir
from edgestream.deploy.plan import CLOUD, ProcessSpec, build_plan, env_references
from edgestream.deploy.render import write_files

__all__ = ["SystemdOptions", "units", "write_units"]

#: kind of process -> (MemoryMax, CPUQuota) by default
LIMITS = {"edge-worker": ("1G", "100%"), "forwarder": ("512M", "50%"), "flink-jobs": ("4G", "200%")}
_MEMORY = re.compile(r"^(\d+[KMGT]?|infinity)$")
_CPU = re.compile(r"^\d+%$")
_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


@dataclass(frozen=True)
class SystemdOptions:
    """Addresses for what the topology leaves to the embedded stack, and unit settings."""

    edge_bootstrap: str = "127.0.0.1:9092"  # the gateway's own Kafka, when it has no bootstrap
    cloud_bootstrap: str = "kafka:9092"
    registry: str = "http://schema-registry:8081"
    data_dir: Path | None = None  # default: the local target's run dir
    env_file: Path | None = None  # default: /etc/edgestream/<topology>.env
    restart_sec: int = 1
    start_limit_burst: int = 10
    start_limit_interval_sec: int = 600
    limits: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(LIMITS))
    cloud_jobs: bool = True

    def __post_init__(self) -> None:
        for kind, (memory, cpu) in self.limits.items():
            if not _MEMORY.match(memory):
                raise DeployError(f"{kind}: MemoryMax {memory!r}: expected bytes like 512M or 2G")
            if not _CPU.match(cpu):
                raise DeployError(f"{kind}: CPUQuota {cpu!r}: expected a percentage like 150%")


def _quote(arg: str) -> str:
    """One ExecStart word: ``%`` and ``$`` escaped, quoted unless plain.

    >>> _quote("/usr/bin/python3"), _quote("a b"), _quote("50%"), _quote('say "hi"')
    ('/usr/bin/python3', '"a b"', '50%%', '"say \\\\"hi\\\\""')
    """
    text = arg.replace("%", "%%").replace("$", "$$")
    if _SAFE.match(arg):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unit_name(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9:_.-]", "-", "-".join(("edgestream", *parts)))


def _targets(topology: Topology, opts: SystemdOptions) -> Targets:
    plan = build_plan(topology)
    brokers = {
        name: addr or (opts.cloud_bootstrap if name == CLOUD else opts.edge_bootstrap)
        for name, addr in plan.brokers.items()
    }
    return Targets(brokers, topology.registry or opts.registry)


def _service(topology: Topology, spec: ProcessSpec, argv: list[str], opts: SystemdOptions,
             target: str, env_file: Path, home: Path) -> str:  # fmt: skip
    memory, cpu = opts.limits.get(spec.kind, LIMITS[spec.kind])
    assert topology.source is not None
    where = f"gateway {spec.gateway}" if spec.gateway else "cloud"
    lines = [
        "[Unit]",
        f"Description=edgestream {topology.name}: {spec.name} ({spec.kind}, {where})",
        "After=network-online.target",
        "Wants=network-online.target",
        f"PartOf={target}",
        f"StartLimitIntervalSec={opts.start_limit_interval_sec}",
        f"StartLimitBurst={opts.start_limit_burst}",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={topology.source.resolve().parent}",
        f"Environment=EDGESTREAM_HOME={_quote(str(home))}",
        "Environment=PYTHONUNBUFFERED=1",
        f"EnvironmentFile=-{env_file}",
        "ExecStart=" + " ".join(_quote(a) for a in argv),
        "Restart=on-failure",
        f"RestartSec={opts.restart_sec}",
        "# systemd >= 254 can back off like the local supervisor (1 s doubling to 30 s):",
        "# RestartSteps=5",
        "# RestartMaxDelaySec=30",
        "TimeoutStopSec=30",
        f"MemoryMax={memory}",
        f"CPUQuota={cpu}",
        "",
        "[Install]",
        f"WantedBy={target}",
        "",
    ]
    return "\n".join(lines)


def units(topology: Topology, opts: SystemdOptions | None = None) -> dict[str, str]:
    """File name -> text of each unit (and the ``.env.example`` of the variables it reads)."""
    from edgestream.core.paths import home_dir

    opts = opts or SystemdOptions()
    if topology.source is None:
        raise DeployError("systemd units need a topology loaded from a file")
    targets = _targets(topology, opts)
    folder = (opts.data_dir or run_dir(topology)).resolve()
    env_file = opts.env_file or Path("/etc/edgestream") / f"{topology.name}.env"
    target = _unit_name(topology.name) + ".target"
    out = {}
    names = []
    for spec in build_plan(topology).processes:
        if spec.kind == "flink-jobs" and not opts.cloud_jobs:
            continue
        argv = process_argv(spec, topology, targets, folder)
        name = _unit_name(topology.name, spec.name) + ".service"
        out[name] = _service(topology, spec, argv, opts, target, env_file, home_dir().resolve())
        names.append(name)
    out[target] = "\n".join([
        "[Unit]",
        f"Description=edgestream {topology.name}: every process of the deployment",
        "Wants=" + " ".join(names),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])  # fmt: skip
    variables = sorted(env_references(topology).items())
    out[_unit_name(topology.name) + ".env.example"] = "".join(
        [f"# {env_file}: the variables topology {topology.name} reads (never written here)\n"]
        + [f"# {'optional' if opt else 'required'}\n{name}=\n" for name, opt in variables]
    )
    return out


def write_units(topology: Topology, out_dir: Path, opts: SystemdOptions | None = None) -> dict:
    """Write :func:`units` into ``out_dir``; file -> "created" / "changed" / "unchanged"."""
    return write_files(out_dir, units(topology, opts))
