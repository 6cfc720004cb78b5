"""Any ONNX model whose inputs the topology declares works: here a third-party IsolationForest
exported with skl2onnx, reading raw channels, no sidecar; run through the real pipeline with
the real registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import IsolationForest

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.registry import RegistryServer
from edgestream.core.serde import AvroDeserializer, AvroSerializer
from edgestream.core.topology import load_topology
from edgestream.edge.models import RawFeatures, load_model
from edgestream.edge.pipeline import TopicPipeline
from tests.support.gateway import PUMP_CHANNELS, write_topology

NORMAL = np.array([2.0, 55.0, 6.0, 30.0])
SPREAD = np.array([0.2, 1.0, 0.3, 1.5])


def _forest(path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = (NORMAL + SPREAD * rng.normal(size=(2000, 4))).astype(np.float32)
    forest = IsolationForest(n_estimators=50, random_state=0).fit(x)
    model = convert_sklearn(
        forest,
        initial_types=[("float_input", FloatTensorType([None, 4]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    model.graph.node.append(onnx.helper.make_node("Neg", ["scores"], ["score"]))
    model.graph.output.append(
        onnx.helper.make_tensor_value_info("score", onnx.TensorProto.FLOAT, [None, 1])
    )
    path.write_bytes(model.SerializeToString())
    return path


def test_a_sidecar_less_onnx_model_scores_raw_channels(tmp_path: Path) -> None:
    model = _forest(tmp_path / "forest.onnx")
    topo_path = write_topology(tmp_path / "t.yaml")
    text = topo_path.read_text().replace(
        "name: pump-model\n",
        "name: pump-model\n    input_name: float_input\n    threshold: 0.05\n    version: if-7\n",
    )
    raw = yaml.safe_load(text)
    raw["models"]["pump"]["path"] = str(model)
    topo_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    topology = load_topology(topo_path)
    scorer, threshold = load_model(topology, "pump")
    assert threshold == 0.05 and scorer.version == "if-7"

    with RegistryServer(tmp_path / "r.db") as registry:
        ser = AvroSerializer(registry.url, "SensorReading", "sensors.pump-value")

        def open_pipeline() -> TopicPipeline:
            return TopicPipeline(
                topology,
                "gw-test",
                topology.sensors.topics[0],
                tmp_path / "state",
                AvroDeserializer(registry.url, reader_schema="SensorReading"),
                scorer,
                sync=False,
                threshold=threshold,
            )

        pipeline = open_pipeline()
        assert isinstance(pipeline.features, RawFeatures)
        rng = np.random.default_rng(1)
        values = NORMAL + SPREAD * rng.normal(size=(400, 4))
        values[200:203] = [20.0, 120.0, 15.0, 90.0]  # an obvious incident, 3 readings
        now = 1_800_000_000_000
        records = [
            ser(
                {
                    "device_id": "pump-1",
                    "site": "site-1",
                    "device_type": "pump",
                    "ts": now - 60_000 + i * 100,
                    "seq": i,
                    "channels": dict(zip(PUMP_CHANNELS, map(float, row), strict=True)),
                    "tags": {},
                }
            )
            for i, row in enumerate(values)
        ]
        out = pipeline.process(0, list(range(400)), records, now)
        # acks name the alerts the broker confirmed: others stay pending for a restart
        pending = []
        for confirmed in (["another-alert"], [a["alert_id"] for a in out.alerts]):
            pipeline.ack([], confirmed)
            pipeline.close()
            pipeline = open_pipeline()
            pending.append([a["alert_id"] for a in pipeline.unacked()[0]])
        pipeline.close()
    assert out.alerts and pending == [[a["alert_id"] for a in out.alerts], []]
    opened = [a for a in out.alerts if a["status"] == "open"]
    assert {a["readings"][0]["seq"] for a in opened} >= {200}
    assert all(a["model_version"] == "if-7" for a in out.alerts)
    direct = scorer.score(values.astype(np.float32))
    assert direct[200:203].min() > threshold > np.median(direct)


def test_a_model_without_sidecar_needs_a_threshold(tmp_path: Path) -> None:
    model = _forest(tmp_path / "forest.onnx")
    raw = yaml.safe_load(write_topology(tmp_path / "t.yaml").read_text())
    raw["models"]["pump"]["path"] = str(model)
    raw["models"]["pump"]["input_name"] = "float_input"
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(EdgestreamError, match="threshold"):
        load_model(load_topology(tmp_path / "t.yaml"), "pump")
