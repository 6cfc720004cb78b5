"""A device type edgestream's code does not know (``compressor``), defined only in a topology,
with a model trained on recorded history: a real gateway worker loads it, scores the
replayed history, and its alerts carry the trained model's version."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgestream.cli.main import app
from edgestream.core.serde import AvroDeserializer
from edgestream.core.stack import Stack
from edgestream.ml.artifact import load_meta
from edgestream.sim.devices import DEVICE_TYPES
from tests.support import byos as kit
from tests.support import gateway as gr

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GATEWAY = "gw-byos"


def test_a_topology_adds_a_device_type_and_its_trained_model(tmp_path: Path) -> None:
    assert "compressor" not in DEVICE_TYPES  # the simulator (the code) knows no compressor
    training = kit.export(tmp_path / "normal.csv", seed=5)
    model, _ = kit.train(tmp_path, training, kit.compressor_topology(tmp_path / "t.yaml", None))
    version = load_meta(model).version
    topology = kit.compressor_topology(tmp_path / "topology.yaml", model, GATEWAY)
    assert CliRunner().invoke(app, ["validate", str(topology)]).exit_code == 0
    replayed = kit.export(tmp_path / "incidents.csv", seed=7, devices=3, duration=120)

    stack = Stack(tmp_path / "stack")
    try:
        ends = stack.start(gateways=1).endpoints()
        bootstrap, registry = ends["edge"]["gw-1"], str(ends["registry"])
        worker = gr.Worker(topology, GATEWAY, bootstrap, registry, tmp_path / "gw").start()
        try:
            args = ["simulate", "--replay", str(replayed), "-t", str(topology),
                    "--device-type", "compressor", *kit.MAP_ARGS, "--fast", "--quiet",
                    "--bootstrap", bootstrap, "--registry", registry,
                    "--labels", str(tmp_path / "labels.jsonl")]  # fmt: skip
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, result.output
            raw = gr.wait_for(bootstrap, "edge.alerts", 1, 120, worker)
        finally:
            assert worker.stop() == 0, worker.log_text()[-2000:]
        decode = AvroDeserializer(registry)
        alerts = [decode(m.value()) for m in raw]
    finally:
        stack.stop()
    assert alerts, "the replayed incidents raised alerts"
    assert {a["model_version"] for a in alerts} == {version} == {"compressor-ae-v1"}
    assert {a["device_type"] for a in alerts} == {"compressor"}
    assert {a["device_id"] for a in alerts} <= {"pump-0001", "pump-0002", "pump-0003"}
