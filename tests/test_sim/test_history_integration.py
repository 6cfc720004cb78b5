"""Real broker + real registry: a multichannel history file with out-of-order timestamps and
a label column replays into the topology's channels, each reading with its own event time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from edgestream.cli.main import app
from edgestream.core.serde import AvroDeserializer
from edgestream.core.stack import StackStatus
from edgestream.sim import read_labels
from tests.support import byos as kit
from tests.support import gateway as gr

pytestmark = pytest.mark.integration

T0 = 1_718_000_000_000


def history(path: Path) -> pd.DataFrame:
    """Three compressors, 200 rows each at 1 Hz, interleaved; every 17th row of a device
    arrives 3 s late (out of order); a labelled episode per device; pump column names."""
    rng = np.random.default_rng(3)
    rows = []
    for k in range(200):
        for d in range(3):
            late = k % 17 == 5
            ts = T0 + (k - 3 * late) * 1000
            rows.append({"timestamp": pd.Timestamp(ts, unit="ms").isoformat(sep=" "),
                         "device_id": f"comp-{d}", "site": f"plant-{d % 2}",
                         "vibration_rms": round(2 + d + rng.normal(0, 0.1), 3),
                         "bearing_temp": round(50 + d + rng.normal(0, 0.5), 3),
                         "pressure": round(5 + rng.normal(0, 0.1), 3),
                         "motor_current": round(18 + rng.normal(0, 0.5), 3),
                         "label": int(40 + 10 * d <= k < 45 + 10 * d)})  # fmt: skip
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False)
    return frame


@pytest.mark.parametrize("frames", [1, 8])
def test_multichannel_history_replays_into_the_topology_channels(
    stack: StackStatus, tmp_path: Path, frames: int
) -> None:
    ends = stack.endpoints()
    bootstrap, registry = ends["edge"]["gw-1"], str(ends["registry"])  # type: ignore[index]
    frame = history(tmp_path / "history.csv")
    topology = kit.compressor_topology(tmp_path / "topology.yaml", None)
    topic = f"sensors.compressor-{frames}"
    labels = tmp_path / "labels.jsonl"
    args = ["simulate", "--replay", str(tmp_path / "history.csv"), "-t", str(topology),
            "--device-type", "compressor", *kit.MAP_ARGS, "--topic", topic, "--fast",
            "--frames", str(frames), "--bootstrap", bootstrap, "--registry", registry,
            "--labels", str(labels), "--json", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["records"] == len(frame)

    decode = AvroDeserializer(registry)
    got: dict[tuple[str, int], tuple[int, dict[str, float], str]] = {}
    for msg in gr.read_topic(bootstrap, topic):
        value = decode(msg.value())
        if "first_seq" in value:  # a SensorFrame: columns of consecutive readings
            for i, ts in enumerate(value["ts"]):
                channels = {c: v[i] for c, v in value["channels"].items()}
                got[value["device_id"], value["first_seq"] + i] = (ts, channels, value["site"])
        else:
            got[value["device_id"], value["seq"]] = (value["ts"], value["channels"], value["site"])
    assert len(got) == len(frame)
    seq: dict[str, int] = {}
    for row in frame.itertuples():
        s = seq[row.device_id] = seq.get(row.device_id, -1) + 1
        ts, channels, site = got[row.device_id, s]
        assert ts == int(pd.Timestamp(row.timestamp).value // 1_000_000)  # event time kept
        assert site == row.site
        want = dict(zip(kit.MAP.values(), (row.vibration_rms, row.bearing_temp, row.pressure,
                                            row.motor_current), strict=True))  # fmt: skip
        assert channels == want
    for device, count in seq.items():  # each device's readings went back in time (late rows)
        times = np.array([got[device, s][0] for s in range(count + 1)])
        assert (np.diff(times) < 0).sum() == 12
    episodes = read_labels(labels).anomalies
    assert [(a.device_id, a.type, a.readings) for a in episodes] == [
        (f"comp-{d}", "labelled", 5) for d in range(3)
    ]
