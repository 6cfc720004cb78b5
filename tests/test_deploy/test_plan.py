"""The deployment plan and its dry-run table (pure: no broker, no registry)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import edgestream.deploy as deploy_package
import edgestream.deploy.plan as plan_module
import edgestream.deploy.render as render_module
import edgestream.deploy.supervise as supervise_module
from edgestream.core.paths import topologies_dir
from edgestream.core.topology import load_topology
from edgestream.deploy import build_plan, render_plan
from tests.support.cli import run_cli
from tests.support.deploy import ENV, EXAMPLES
from tests.support.doctests import run_doctests

pytestmark = pytest.mark.usefixtures("example_env")


def _reordered(source: Path, target: Path) -> Path:
    """The same topology, every mapping's keys in reverse order, in another folder (the model
    files reachable by the same relative paths)."""

    def flip(node: object) -> object:
        if isinstance(node, dict):
            return {k: flip(node[k]) for k in reversed(list(node))}
        if isinstance(node, list):
            return [flip(v) for v in node]
        return node

    data = yaml.safe_load(source.read_text())
    target.parent.mkdir(parents=True)
    (target.parent.parent / "src").symlink_to(source.parent.parent / "src")
    target.write_text(yaml.safe_dump(flip(data), sort_keys=False))
    return target


@pytest.mark.parametrize("name", EXAMPLES)
def test_dry_run_table_is_stable(name: str, tmp_path: Path) -> None:
    path = topologies_dir() / name
    first = render_plan(build_plan(load_topology(path, check_files=False)))
    again = render_plan(build_plan(load_topology(path, check_files=False)))
    moved = render_plan(build_plan(load_topology(_reordered(path, tmp_path / "t" / name))))
    assert first == again == moved
    assert "127.0.0.1" not in first  # no ports of whatever happens to run


def test_cli_dry_run_prints_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    path = topologies_dir() / "factory_vibration.yaml"
    run_cli("deploy", str(path), "--dry-run")
    out = capsys.readouterr().out
    assert out == render_plan(build_plan(load_topology(path)))
    assert "factory-s3cret-value" not in out


def test_plan_follows_the_topology() -> None:
    topology = load_topology(topologies_dir() / "factory_vibration.yaml", check_files=False)
    plan = build_plan(topology)
    for gateway in topology.gateways:
        broker = f"edge:{gateway.id}"
        topics = {t.name: t for t in plan.topics_on(broker)}
        frames = topics["factory.pumps.frames"]
        assert (frames.partitions, dict(frames.configs)) == (
            6, {"retention.ms": "86400000", "retention.bytes": str(1 << 30)}
        )  # fmt: skip
        legacy = topics["factory.pumps.legacy"]  # the defaults: a day, 1 GiB per partition
        assert (legacy.partitions, dict(legacy.configs)) == (
            2, {"retention.ms": str(24 * 3600 * 1000), "retention.bytes": str(1 << 30)}
        )  # fmt: skip
        assert {"factory.pumps.frames.dlq", "factory.pumps.legacy.late"} <= set(topics)
        kinds = {p.kind for p in plan.processes if p.gateway == gateway.id}
        assert kinds == {"edge-worker", "forwarder"}
    cloud = {t.name: t for t in plan.topics_on("cloud")}
    assert cloud["fleet.alerts"].partitions == topology.cloud.parallelism == 2
    assert cloud["fleet.models"].partitions == 1
    assert plan.brokers["cloud"] == ENV["FACTORY_CLOUD_BOOTSTRAP"]
    subjects = {s.subject: s.record for s in plan.schemas}
    assert subjects["factory.pumps.frames-value"] == "SensorFrame"
    assert subjects["fleet.alerts-value"] == "AnomalyAlert"
    assert "fleet.stats-value" not in subjects  # JSON for Flink SQL, no registry subject
    assert [j.name for j in plan.jobs] == ["fleet-stats", "drift", "retrain-trigger"]


def test_gateway_topics_match_the_worker() -> None:
    from edgestream.edge.config import edge_topics

    topology = load_topology(topologies_dir() / "default.yaml", check_files=False)
    for gateway in topology.gateways:
        planned = {t.name: t.partitions for t in plan_module.edge_topics(topology, gateway.id)}
        assert planned == edge_topics(topology, gateway.id)


@pytest.mark.parametrize("module", [plan_module, deploy_package, render_module, supervise_module])
def test_docstring_examples_run(module: object) -> None:
    run_doctests(module)
