"""``deploy`` on the embedded stack: real brokers, registry and processes; twice is a no-op."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from confluent_kafka.admin import AdminClient

from edgestream.core.paths import topologies_dir
from edgestream.core.registry.client import registry_client
from edgestream.core.stack import Stack
from edgestream.core.topology import load_topology
from edgestream.deploy import apply_local, build_plan, process_status, render_changes, stop_local

pytestmark = pytest.mark.integration


def _one_gateway(tmp_path: Path) -> Path:
    """The default topology with its first gateway only, beside a link to the model files."""
    source = topologies_dir() / "default.yaml"
    data = yaml.safe_load(source.read_text())
    data["gateways"] = data["gateways"][:1]
    folder = tmp_path / "topologies"
    folder.mkdir()
    (tmp_path / "src").symlink_to(source.parent.parent / "src")
    path = folder / "one.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_apply_creates_everything_then_changes_nothing(tmp_path: Path) -> None:
    topology = load_topology(_one_gateway(tmp_path))
    plan = build_plan(topology)
    try:
        first = apply_local(topology)
        actions = Counter(c.action for c in first)
        assert actions["created"] == len(plan.topics)
        assert actions["registered"] == len(plan.schemas)
        assert actions["started"] == 4  # the stack, gateway worker, forwarder, Flink jobs
        ends = Stack().status().endpoints()

        for broker, address in (("edge:gw-1", ends["edge"]["gw-1"]), ("cloud", ends["cloud"])):
            meta = AdminClient({"bootstrap.servers": address}).list_topics(timeout=10)
            found = {name: len(t.partitions) for name, t in meta.topics.items()}
            for topic in plan.topics_on(broker):
                assert found.get(topic.name) == topic.partitions, (broker, topic.name)
        subjects = set(registry_client(str(ends["registry"])).get_subjects())
        assert {s.subject for s in plan.schemas} <= subjects
        pids = process_status(topology)
        assert set(pids) == {"edge-gw-1", "forward-gw-1", "cloud-jobs"} and all(pids.values())

        second = apply_local(topology)
        report = render_changes(second)
        assert {c.action for c in second} == {"unchanged"}, report
        assert process_status(topology) == pids
    finally:
        stopped = stop_local(topology)
        Stack().stop()
    assert sorted(stopped) == ["cloud-jobs", "edge-gw-1", "forward-gw-1"]
    assert not any(process_status(topology).values())
