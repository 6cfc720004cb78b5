"""``edgestream deploy TOPOLOGY``: print the plan, apply it locally, or write Kubernetes
manifests or systemd units.

    edgestream deploy topologies/default.yaml --dry-run
    edgestream deploy topologies/default.yaml            # topics, schemas, supervised processes
    edgestream deploy topologies/default.yaml --status   # their pids, restarts, last exit
    edgestream deploy topologies/default.yaml --down     # stop those processes
    edgestream deploy topologies/factory_vibration.yaml --target k8s --out deploy/k8s/factory
    edgestream deploy topologies/default.yaml --target systemd --out /etc/systemd/system
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgestream.cli.app import command_hook
from edgestream.cli.options import TopologyFile
from edgestream.core.exceptions import EdgestreamError
from edgestream.deploy.k8s import BROKER_IMAGE

if TYPE_CHECKING:
    from edgestream.core.topology import Topology
    from edgestream.deploy import K8sOptions, SystemdOptions


# long: a typer command whose length is its option list (three targets' options)
def deploy_command(
    topology: TopologyFile,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what would be done; change nothing."
    ),
    target: str = typer.Option(
        "local", "--target", help="local (brokers + supervised processes), k8s or systemd."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        help="k8s: folder of the manifests (default deploy/k8s/<topology name>); systemd: "
        "folder of the units (required).",
    ),
    image: str = typer.Option("edgestream:0.1.0", "--image", help="k8s: the edgestream image."),
    broker_image: str = typer.Option(
        BROKER_IMAGE,
        "--broker-image",
        help="k8s: image of the edge broker sidecar (gateways without bootstrap).",
    ),
    namespace: str = typer.Option(None, "--namespace", help="k8s: namespace of the objects."),
    registry: str = typer.Option(
        "http://schema-registry:8081",
        "--registry",
        help="k8s/systemd: registry URL when the topology has none.",
    ),
    cloud_bootstrap: str = typer.Option(
        "kafka:9092",
        "--cloud-bootstrap",
        help="k8s/systemd: cloud brokers when the topology's forwarding.bootstrap is not set.",
    ),
    edge_bootstrap: str = typer.Option(
        "127.0.0.1:9092",
        "--edge-bootstrap",
        help="systemd: the gateway's Kafka when its gateways[].bootstrap is not set.",
    ),
    processes: bool = typer.Option(
        True,
        "--processes/--no-processes",
        help="local: start the gateway/forwarder/cloud processes.",
    ),
    cloud_jobs: bool = typer.Option(
        True, "--cloud-jobs/--no-cloud-jobs", help="local: start the Flink jobs process too."
    ),
    down: bool = typer.Option(False, "--down", help="local: stop the processes deploy started."),
    status: bool = typer.Option(
        False, "--status", help="local: each process's state, pid, restarts and last exit."
    ),
) -> None:
    """Deploy a topology: topics with partitions/configs, schemas, gateway workers, forwarders
    and the Flink jobs. Idempotent: a second run reports everything unchanged."""
    from edgestream.core.topology import load_topology
    from edgestream.deploy import K8sOptions, SystemdOptions

    if target not in ("local", "k8s", "systemd"):
        raise EdgestreamError(f"--target {target!r}: expected local, k8s or systemd")
    loaded = load_topology(topology)
    if status or down:
        _local_processes(loaded, stop=not status)
    elif target == "k8s":
        opts = K8sOptions(image, broker_image, namespace, registry, cloud_bootstrap)
        _write_manifests(loaded, out or Path("deploy") / "k8s" / loaded.name, opts, dry_run)
    elif target == "systemd":
        if out is None:
            raise EdgestreamError(
                "--target systemd writes units into --out DIR: give one (/etc/systemd/system, say)"
            )
        sd = SystemdOptions(edge_bootstrap, cloud_bootstrap, registry, cloud_jobs=cloud_jobs)
        _write_units(loaded, out, sd, dry_run)
    elif dry_run:
        from edgestream.deploy import build_plan, render_plan

        typer.echo(render_plan(build_plan(loaded)), nl=False)
    else:
        from edgestream.deploy import apply_local, render_changes

        changes = apply_local(loaded, processes=processes, cloud_jobs=cloud_jobs)
        typer.echo(render_changes(changes), nl=False)


register = command_hook("deploy", deploy_command)


def _local_processes(loaded: Topology, *, stop: bool) -> None:
    """``--status``: the state of each process deploy started; ``--down``: stop them."""
    from edgestream.deploy import process_states, render_status, stop_local

    if not stop:
        typer.echo(render_status(loaded.name, process_states(loaded)), nl=False)
        return
    stopped = stop_local(loaded)
    typer.echo(f"stopped {len(stopped)} process(es): {', '.join(stopped) or 'none running'}")


def _write_manifests(loaded: Topology, folder: Path, opts: K8sOptions, dry_run: bool) -> None:
    """The Kubernetes manifests into ``folder`` (``dry_run``: list their objects)."""
    from edgestream.core.tables import table
    from edgestream.deploy import manifests, write_manifests

    if dry_run:
        rows = [
            (file, obj["kind"], obj["metadata"]["name"])
            for file, objs in manifests(loaded, opts).items()
            for obj in objs
        ]
        typer.echo(table(f"manifests for {folder}", ("file", "kind", "name"), rows))
        return
    written = write_manifests(loaded, folder, opts)
    typer.echo(table(f"manifests in {folder}", ("file", "action"), sorted(written.items())))


def _write_units(loaded: Topology, out: Path, sd: SystemdOptions, dry_run: bool) -> None:
    """The systemd units into ``out`` (``dry_run``: list their files)."""
    from edgestream.core.tables import table
    from edgestream.deploy import units, write_units

    if dry_run:
        typer.echo(table(f"systemd units for {out}", ("file",), [(f,) for f in units(loaded, sd)]))
        return
    written = write_units(loaded, out, sd)
    typer.echo(table(f"systemd units in {out}", ("file", "action"), sorted(written.items())))
