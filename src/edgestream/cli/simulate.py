"""``edgestream simulate``: a deterministic sensor fleet (or a CSV replay) producing to Kafka."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from edgestream.cli.app import command_hook
from edgestream.cli.options import AnomalyRate, JsonLine, Mapping, Quiet, Rate, Seed
from edgestream.sim import ReplaySpec, SimConfig, SimConfigError, SimProgress, simulate
from edgestream.sim.config import now_ms, parse_start_time

DEFAULT_DURATION_S = 60.0

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False)


# long: a typer command whose length is its option list (the fleet, drift, lateness, replay)
def simulate_command(
    bootstrap: str = typer.Option(
        None,
        "--bootstrap",
        help="Kafka HOST:PORT (default: the running stack's first edge broker).",
    ),
    registry: str = typer.Option(
        None, "--registry", help="Schema registry URL (default: the running stack's registry)."
    ),
    devices: int = typer.Option(10, "--devices", help="Devices in the fleet."),
    rate: Rate = 1.0,
    duration: float = typer.Option(
        None,
        "--duration",
        help="Seconds of event time (default 60; 0 = until Ctrl-C; replay: the whole file).",
    ),
    frames: int = typer.Option(1, "--frames", help="K > 1: send SensorFrames of K readings."),
    anomaly_rate: AnomalyRate = 0.01,
    drift_at: float = typer.Option(None, "--drift-at", help="Drift starts S seconds in."),
    drift_ramp: float = typer.Option(60.0, "--drift-ramp", help="Seconds to reach full drift."),
    drift_shift: float = typer.Option(2.0, "--drift-shift", help="Mean shift, channel scales."),
    drift_std: float = typer.Option(1.5, "--drift-std", help="Noise std multiplier of drift."),
    drift_types: str = typer.Option(None, "--drift-types", help="Types that drift (all)."),
    drift_channels: str = typer.Option(None, "--drift-channels", help="Channels that drift."),
    seed: Seed = 0,
    late_fraction: float = typer.Option(0.0, "--late-fraction", help="Fraction sent late."),
    late_within: str = typer.Option("1,5", "--late-within", help="MIN,MAX s small delays."),
    late_beyond: str = typer.Option("30,120", "--late-beyond", help="MIN,MAX s large delays."),
    late_beyond_share: float = typer.Option(
        0.25, "--late-beyond-share", help="Share of late readings with a large delay."
    ),
    sites: int = typer.Option(3, "--sites", help="Sites site-1..site-S."),
    device_types: str = typer.Option("pump,reefer", "--device-types", help="Comma list."),
    start_time: str = typer.Option(
        None, "--start-time", help="Event time of the start: epoch ms or ISO (default now)."
    ),
    topic: str = typer.Option(
        "sensors.{device_type}", "--topic", help="Topic template ({device_type}, {site})."
    ),
    partitions: int = typer.Option(1, "--partitions", help="Partitions of created topics."),
    prefix: str = typer.Option("", "--prefix", help="Namespace for device ids and sites."),
    labels: Path = typer.Option(
        Path("sim-labels.jsonl"), "--labels", help="Ground-truth JSON-lines file."
    ),
    fast: bool = typer.Option(False, "--fast", help="No pacing: same records, virtual time."),
    speed: str = typer.Option("1", "--speed", help="Pacing factor: 2 or 2x = twice real time."),
    quiet: Quiet = False,
    json_out: JsonLine = False,
    replay: Path = typer.Option(
        None, "--replay", help="Replay a history file: CSV or Parquet, a column per channel."
    ),
    mapping: Mapping = None,
    topology: Path = typer.Option(
        None, "--topology", "-t", help="Replay: channels and topic of --device-type from here."
    ),
    device_id: str = typer.Option(
        None, "--device-id", help="Replay: device of a file without one."
    ),
    site: str = typer.Option("site-1", "--site", help="Replay: site of rows without one."),
    device_type: str = typer.Option("replay", "--device-type", help="Type of the replay."),
    channel: str = typer.Option("value", "--channel", help="Channel of a NAB value column."),
    replay_windows: Path = typer.Option(
        None, "--replay-windows", help="NAB combined_windows.json: windows become labels."
    ),
    export: Path = typer.Option(
        None, "--export", help="Write the run (one device type) to a CSV/Parquet file, no Kafka."
    ),
) -> None:
    """Simulate a sensor fleet (pumps, reefers) or replay recorded history into Kafka, with
    labels; or export a simulated run with its labels to a file."""
    if replay is None and (device_id or replay_windows or mapping or topology):
        raise SimConfigError("--device-id, --map, --topology and --replay-windows need --replay")
    config = SimConfig(
        devices=devices,
        rate=rate,
        duration=_event_duration(duration, replay is not None),
        seed=seed,
        start_time=parse_start_time(start_time),
        sites=sites,
        device_types=_names(device_types),
        anomaly_rate=anomaly_rate,
        drift_at=drift_at,
        drift_ramp=drift_ramp,
        drift_shift=drift_shift,
        drift_std=drift_std,
        drift_types=_names(drift_types) if drift_types else None,
        drift_channels=_names(drift_channels) if drift_channels else None,
        late_fraction=late_fraction,
        late_within=_pair(late_within, "--late-within"),
        late_beyond=_pair(late_beyond, "--late-beyond"),
        late_beyond_share=late_beyond_share,
        frames=frames,
        topic=topic,
        prefix=prefix,
        partitions=partitions,
        labels=labels,
        fast=fast,
        speed=parse_speed(speed),
        replay=None
        if replay is None
        else ReplaySpec(
            replay, device_id, site, device_type, channel, replay_windows, _pairs(mapping)
        ),
    )
    if topology is not None:
        config = _with_topology(config, topology, topic)
    if export is not None:
        _export(config, export)
        return
    _produce(config, *_endpoints(bootstrap, registry), quiet=quiet, json_out=json_out)


register = command_hook("simulate", simulate_command)


def _event_duration(duration: float | None, replay: bool) -> float | None:
    """``--duration``: seconds of event time, ``None`` for no end (0; a replay's default).

    >>> _event_duration(None, replay=False), _event_duration(0, replay=False)
    (60.0, None)
    """
    if duration is None:
        return None if replay else DEFAULT_DURATION_S
    if duration < 0:
        raise SimConfigError(f"--duration must be >= 0 (got {duration:g})")
    return duration or None


def _produce(
    config: SimConfig, bootstrap: str, registry: str, *, quiet: bool, json_out: bool
) -> None:
    """Run the fleet into Kafka until its end or Ctrl-C / SIGTERM, then print the summary."""
    with _stop_on_signals() as stop, _progress(quiet or json_out) as on_progress:
        result = simulate(
            config, bootstrap=bootstrap, registry=registry, stop=stop, on_progress=on_progress
        )
    _out.print(result.summary())
    if json_out:
        print(json.dumps({"records": result.readings, **result.as_dict()}))


def parse_speed(text: str) -> float:
    """``--speed``: a pacing factor, ``10`` or ``10x``.

    >>> parse_speed("10x"), parse_speed("0.5")
    (10.0, 0.5)
    """
    try:
        return float(text.strip().lower().removesuffix("x"))
    except ValueError:
        raise SimConfigError(f"--speed takes a factor such as 10 or 10x (got {text!r})") from None


def _pairs(mapping: list[str] | None) -> tuple[tuple[str, str], ...]:
    from edgestream.sim.history import parse_mapping

    return tuple(parse_mapping(mapping or []).items())


def _with_topology(config: SimConfig, path: Path, topic: str) -> SimConfig:
    """The replay with the channels (and the sensor topic) of its device type in ``path``."""
    from dataclasses import replace

    from edgestream.core.topology import load_topology

    spec = config.replay
    assert spec is not None  # --topology needs --replay (checked above)
    topo = load_topology(path, check_files=False)
    try:
        sensor = topo.sensor_topic_of(spec.device_type)
    except ValueError as error:
        raise SimConfigError(f"--device-type: {error}") from None
    spec = replace(spec, channels=tuple(sensor.channels), required=sensor.required_channels)
    changes: dict[str, Any] = {"replay": spec}
    if topic == "sensors.{device_type}":  # the default: the topology names the topic
        changes["topic"] = sensor.name
    return config.with_(**changes)


def _export(config: SimConfig, path: Path) -> None:
    """A simulated run of one device type, with its labels, as a history file."""
    from edgestream.ml.data import simulate_readings
    from edgestream.sim.history import History, write_history

    if config.replay is not None or len(config.device_types) != 1:
        raise SimConfigError("--export writes one simulated device type: pass --device-types T")
    if config.duration is None:
        raise SimConfigError("--export needs a finite --duration")
    if config.start_time is None:
        config = config.with_(start_time=now_ms())
    device_type = config.device_types[0]
    data = simulate_readings(config, device_type)
    history = History(
        str(path), data.device_ids.astype(object), None, data.ts, data.values, data.channels,
        data.anomalous,
    )  # fmt: skip
    write_history(path, history)
    episodes = len(data.episodes)
    _out.print(
        f"wrote {len(data.ts):,} {device_type} readings of {len(set(data.device_ids))} devices "
        f"({int(data.anomalous.sum()):,} labelled anomalous, {episodes} episodes) to {path}"
    )


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _pair(text: str, option: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise SimConfigError(f"{option} takes MIN,MAX seconds (got {text!r})") from None
    return low, high


def _endpoints(bootstrap: str | None, registry: str | None) -> tuple[str, str]:
    """Fill in missing endpoints from the running embedded stack."""
    if bootstrap and registry:
        return bootstrap, registry
    from edgestream.core.stack import Stack

    status = Stack().status()
    endpoints: dict[str, Any] = status.endpoints() if status.running else {}
    edge = endpoints.get("edge") or {}
    bootstrap = bootstrap or (edge[sorted(edge)[0]] if edge else None)
    registry = registry or endpoints.get("registry")
    if not bootstrap or not registry:
        missing = " and ".join(
            name for name, v in (("--bootstrap", bootstrap), ("--registry", registry)) if not v
        )
        raise SimConfigError(
            f"{missing} needed: no embedded stack is running (start it with "
            "`edgestream stack start`, or pass the addresses of your own services)"
        )
    return bootstrap, registry


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """Ctrl-C / SIGTERM end the run cleanly (labels written); a second Ctrl-C aborts."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _progress(off: bool) -> Iterator[Any]:
    """A live progress line on stderr, fed by ``simulate``'s ``on_progress``."""
    if off:
        yield None
        return
    progress = Progress(
        TextColumn("[bold]simulate[/]"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} readings"),
        TextColumn("{task.fields[rate]:,.0f}/s"),
        TextColumn("{task.fields[messages]:,} msgs"),
        TextColumn("late pending {task.fields[late]:,}"),
        TimeElapsedColumn(),
        console=_err,
        transient=True,
    )
    task = progress.add_task("simulate", total=None, rate=0.0, messages=0, late=0)

    def update(p: SimProgress) -> None:
        rate = p.readings / p.elapsed_s if p.elapsed_s > 0 else 0.0
        progress.update(
            task,
            completed=p.readings,
            total=p.expected,
            rate=rate,
            messages=p.messages,
            late=p.late_pending,
        )

    with progress:
        yield update
