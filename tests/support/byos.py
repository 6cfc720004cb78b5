"""Bring your own sensors, for tests: a simulator export renamed to a compressor fleet, and a
topology of that device type (which edgestream's code does not know)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from edgestream.cli.main import app

#: pump columns of a simulator export -> the compressor's channels (``--map``)
MAP = {
    "vibration_rms": "vibration",
    "bearing_temp": "discharge_temp",
    "pressure": "discharge_pressure",
    "motor_current": "current",
}
MAP_ARGS = [arg for col, ch in MAP.items() for arg in ("--map", f"{col}={ch}")]
CHANNELS = {
    "vibration": {"unit": "mm/s", "min": 0, "max": 50},
    "discharge_temp": {"unit": "degC", "min": -30, "max": 150},
    "discharge_pressure": {"unit": "bar", "min": 0, "max": 16},
    "current": {"unit": "A", "min": 0, "max": 100},
}


def cli(*args: str) -> Any:
    """``edgestream ARGS`` in process; fails the test on a non-zero exit."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result


def export(path: Path, seed: int, devices: int = 6, duration: int = 600) -> Path:
    """A labelled simulator export of pumps (10 Hz), through ``simulate --export``."""
    cli("simulate", "--export", str(path), "--device-types", "pump", "--devices", str(devices),
        "--rate", "10", "--duration", str(duration), "--seed", str(seed),
        "--start-time", "2024-06-10T06:13:20Z")  # fmt: skip
    return path


def compressor_topology(path: Path, model: Path | None, gateway: str = "gw-1",
                        **overrides: Any) -> Path:  # fmt: skip
    """A one-gateway compressor topology scoring with ``model`` (features in file order)."""
    topo: dict[str, Any] = {
        "name": "compressors",
        "gateways": [{"id": gateway, "sites": ["site-1"], "device_types": ["compressor"]}],
        "sensors": {
            "validation": {"max_clock_skew": "5m", "max_age": None},
            "topics": [
                {"name": "sensors.compressor", "device_type": "compressor", "channels": CHANNELS}
            ],
        },
        "features": {"compressor": list(CHANNELS)},
        "models": {
            "compressor": {
                "name": "compressor-ae",
                "path": str(model) if model else "missing.onnx",
                "batch": {"size": 256, "max_wait": "20ms"},
            }
        },
        "windows": [{"size": "10s", "allowed_lateness": "2s", "max_out_of_orderness": "1s"}],
        "anomaly": {
            "rules": [{"name": "compressor", "consecutive": 1}],
            "suppression": {"cooldown": "30s", "update_interval": "2s"},
        },
    }
    topo.update(overrides)
    path.write_text(yaml.safe_dump(topo, sort_keys=False))
    return path


def train(tmp: Path, data: Path, topology: Path, *extra: str) -> tuple[Path, dict[str, Any]]:
    """``models train`` of the compressor on ``data``: the ONNX path and the JSON report."""
    import json

    args = ["models", "train", "--device-type", "compressor", "--data", str(data),
            "-t", str(topology), "--out", str(tmp / "models"), "--json"]  # fmt: skip
    out = cli(*args, *MAP_ARGS, *extra)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return Path(report["onnx"]), report
