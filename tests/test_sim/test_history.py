"""History files (multichannel CSV / Parquet) and their replay: channels, event time, labels,
and one-line errors naming file, row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgestream.sim import ReplaySpec, SimConfig, Simulator
from edgestream.sim.exceptions import ReplayError
from edgestream.sim.history import read_history

CSV = """timestamp,device_id,site,amps,temp,label
2024-06-10 06:13:20,c-1,plant-a,3.0,20.0,0
2024-06-10 06:13:20,c-2,plant-b,4.0,30.0,0
2024-06-10 06:13:22,c-1,plant-a,3.2,20.2,1
2024-06-10 06:13:21,c-1,plant-a,3.1,20.1,1
2024-06-10 06:13:21,c-2,plant-b,4.1,30.1,0
2024-06-10 06:13:23,c-1,plant-a,3.3,20.3,0
"""
T0 = 1_718_000_000_000  # 2024-06-10 06:13:20 UTC


def replay(path: Path, **spec) -> tuple[list, Simulator]:
    base = {"device_type": "compressor", "mapping": (("amps", "current"),)}
    cfg = SimConfig(duration=None, labels=None, replay=ReplaySpec(path, **{**base, **spec}))
    sim = Simulator(cfg)
    return list(sim.messages()), sim


def test_channels_event_time_and_labels_of_a_multichannel_file(tmp_path: Path) -> None:
    path = tmp_path / "plant.csv"
    path.write_text(CSV)
    messages, sim = replay(path, channels=("current", "temp"))
    got = [(m.value["device_id"], m.value["site"], m.value["ts"] - T0, m.value["seq"],
            m.value["channels"]) for m in messages]  # fmt: skip
    assert got == [  # file order; c-1's 06:13:21 reading is sent after its 06:13:22 one
        ("c-1", "plant-a", 0, 0, {"current": 3.0, "temp": 20.0}),
        ("c-2", "plant-b", 0, 0, {"current": 4.0, "temp": 30.0}),
        ("c-1", "plant-a", 2000, 1, {"current": 3.2, "temp": 20.2}),
        ("c-1", "plant-a", 1000, 2, {"current": 3.1, "temp": 20.1}),
        ("c-2", "plant-b", 1000, 1, {"current": 4.1, "temp": 30.1}),
        ("c-1", "plant-a", 3000, 3, {"current": 3.3, "temp": 20.3}),
    ]
    assert all(m.topic == "sensors.compressor" for m in messages)
    (label,) = sim.labels().anomalies
    assert (label.device_id, label.type, label.first_seq, label.last_seq) == (
        "c-1",
        "labelled",
        1,
        2,
    )
    assert (label.start_ts - T0, label.end_ts - T0) == (2000, 1000)  # rows 1..2 of c-1


def test_parquet_reads_like_csv(tmp_path: Path) -> None:
    csv = tmp_path / "plant.csv"
    csv.write_text(CSV)
    frame = pd.read_csv(csv)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame.to_parquet(tmp_path / "plant.parquet", index=False)
    a, b = read_history(csv), read_history(tmp_path / "plant.parquet")
    assert a.channels == b.channels == ("amps", "temp")
    for x, y in ((a.ts, b.ts), (a.values, b.values), (a.labels, b.labels)):
        assert np.array_equal(x, y)
    assert a.device_id.tolist() == b.device_id.tolist() and a.site.tolist() == b.site.tolist()


THREE = ("current", "temp", "pressure")
BAD_FILES = [  # (text replaced, by, replay settings, how the error starts after the file name)
    ("timestamp,", "time,", {}, "row 1, column 'timestamp': missing"),
    ("3.1,20.1", "3.1,hot", {}, "row 5, column 'temp': 'hot' is not a number"),
    ("4.1,30.1", "4.1,", {}, "row 6, column 'temp': empty cell"),
    ("06:13:23", "06:73:23", {}, "row 7, column 'timestamp': '2024-06-10 06:73:23' is not a time"),
    ("", "", {"channels": ("current", "x")}, "row 1, column 'temp': unknown channel 'temp'"),
    ("", "", {"channels": THREE, "required": THREE}, "row 1, column 'pressure': missing"),
    (",device_id", ",unit", {"device_id": "c-9"}, "row 1, column 'unit': unknown channel 'unit'"),
]


@pytest.mark.parametrize(("old", "new", "settings", "message"), BAD_FILES)
def test_bad_files_get_one_line_naming_file_row_and_column(
    tmp_path: Path, old: str, new: str, settings: dict, message: str
) -> None:
    path = tmp_path / "plant.csv"
    path.write_text(CSV.replace(old, new) if old else CSV)
    with pytest.raises(ReplayError) as error:
        replay(path, **{"channels": ("current", "temp"), **settings})
    assert str(error.value).startswith(f"plant.csv: {message}")
    assert "\n" not in str(error.value)


def test_parquet_rows_are_numbered_from_one(tmp_path: Path) -> None:
    frame = pd.DataFrame({"timestamp": [T0, T0 + 1000], "device_id": ["a", "a"],
                          "temp": ["1.5", "warm"]})  # fmt: skip
    frame.to_parquet(tmp_path / "x.parquet", index=False)
    with pytest.raises(ReplayError, match=r"^x\.parquet: row 2, column 'temp': 'warm' is not"):
        read_history(tmp_path / "x.parquet")


def test_a_file_without_a_device_column_needs_a_device_id(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("timestamp,temp\n2024-06-10 06:13:20,1.0\n")
    with pytest.raises(ReplayError, match="--device-id"):
        read_history(path)
    assert read_history(path, device_id="m-1").device_id.tolist() == ["m-1"]
