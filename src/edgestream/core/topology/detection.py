"""What the gateways do with their readings: batches, models, windows and anomaly rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from edgestream.core.topology.fields import (
    Duration,
    EnvStr,
    Frozen,
    Name,
    Number,
    PositiveDuration,
    PositiveInt,
)

__all__ = [
    "AnomalyRule",
    "AnomalySpec",
    "Batch",
    "ModelSpec",
    "MuteWhen",
    "OnlineDetector",
    "Severity",
    "Suppression",
    "Window",
]

SCOPES = ("device", "site")


class Batch(Frozen):
    """Inference micro-batching: run when ``size`` readings are queued or after ``max_wait``."""

    size: PositiveInt = 256
    """Readings per inference call at most."""
    max_wait: Duration = 20
    """How long the first queued reading waits for the batch to fill."""


class OnlineDetector(Frozen):
    """Settings of the in-stream detector (``kind: online``): learns per device as it runs.

    See :mod:`edgestream.edge.online` for what each setting does. ``calibration``: readings
    a new device only learns from (scores 0) before it is scored.
    """

    calibration: Annotated[int, Field(ge=10)] = 750
    """Readings a new device only learns from (score 0); they fix its range per channel."""
    levels: Annotated[int, Field(ge=2, le=64)] = 6
    """Bins the calibrated range is cut into (values beyond it get bins of their own)."""
    order: Annotated[int, Field(ge=1, le=4)] = 2
    """Previous bins the sequence model predicts the next bin from."""
    tod: Annotated[int, Field(ge=0, le=288)] = 96
    """Time-of-day buckets per day of the daily-pattern model (0: off)."""
    recent: Annotated[int, Field(ge=0)] = 100
    """About how many recent readings the recent-level model's mean and variance cover
    (0: off)."""
    history: Annotated[int, Field(ge=0)] = 8000
    """About how many readings the long-run level model's mean and variance cover: a value
    stays unusual after the recent level has followed it (0: off)."""
    tolerance: Annotated[float, Field(ge=0.0)] = 0.05
    """A value beyond the range seen so far by more than this share of its width scores 1."""
    average: Annotated[int, Field(ge=2, le=100)] = 20
    """Raw scores averaged before the anomaly likelihood compares them with their history."""
    horizon: Annotated[int, Field(ge=10)] = 8640
    """Readings of history the likelihood weighs equally (older ones fade exponentially)."""
    rest: Annotated[int, Field(ge=0)] = 25
    """Readings that score 0 after a detection: one detection per event (0: off)."""


class ModelSpec(Frozen):
    """The model that scores one device type: an ONNX file (``kind: onnx``, the default) or
    the gateway's in-stream detector (``kind: online``, settings in ``online``; no file).

    ``path`` is relative to the topology file. ``inputs`` are the channels the model reads,
    in order; they must equal the device type's ``features`` (omitted: the features). The
    model takes one float tensor named ``input_name`` of shape ``[N, width]`` and gives one
    score per row in the output ``output`` (higher = more anomalous). ``width`` is
    ``len(inputs)``, unless a sidecar ``<model>.json`` lies beside the ONNX file: then the
    model consumes the sidecar's derived ``inputs`` computed from its ``channels`` (which
    must equal the features). A reading is anomalous when its score exceeds ``threshold``;
    omitted, the model's own calibrated threshold (from its sidecar / ModelUpdate) is used,
    which follows retrained versions.
    """

    name: Name
    """The model's name: versions, signatures and rollouts are per name."""
    kind: Literal["onnx", "online"] = "onnx"
    """``onnx``: a model file; ``online``: the gateway's in-stream detector, learned per device."""
    path: Path | None = None
    """The ONNX file, relative to the topology file (required for ``kind: onnx``)."""
    online: OnlineDetector = OnlineDetector()
    """Settings of the in-stream detector (``kind: online``)."""
    version: EnvStr = "1"
    """The version of a model without a sidecar, and of an online model (a sidecar's wins)."""
    inputs: tuple[Name, ...] | None = None
    """The channels the model reads, in order; must equal the type's features (omitted: them)."""
    input_name: str = "input"
    """Name of the model's float input tensor ``[N, width]``."""
    output: str = "score"
    """Name of the output with one score per row (higher = more anomalous)."""
    threshold: Number | None = None
    """Anomalous above this score (omitted: the model's calibrated threshold, which follows
    retrained versions)."""
    batch: Batch = Batch()
    """Inference micro-batching."""
    intra_op_threads: PositiveInt = 1
    """ONNX Runtime threads per inference call."""

    @model_validator(mode="after")
    def _file_for_onnx(self) -> ModelSpec:
        if self.kind == "onnx" and self.path is None:
            raise ValueError("a path to the ONNX file (or kind: online, which needs none)")
        return self


class Window(Frozen):
    """An event-time window: tumbling (no ``hop``) or hopping (``hop`` divides ``size``).

    The watermark of a partition trails its largest event time by ``max_out_of_orderness``;
    a partition silent for ``idle_timeout`` stops holding it back. A window is emitted once
    the watermark passes its end plus ``allowed_lateness``; later readings go to the late
    topic. ``scopes`` are the keys windows are computed for.
    """

    size: PositiveDuration
    """The window's length."""
    hop: PositiveDuration | None = None
    """Time between window starts of a hopping window; must divide ``size`` (null: tumbling)."""
    allowed_lateness: Duration = 0
    """How long after its end a window still takes readings (later ones go to the late topic)."""
    max_out_of_orderness: Duration = 1_000
    """How far a partition's watermark trails its largest event time."""
    idle_timeout: PositiveDuration | None = 30_000
    """A partition silent this long stops holding the watermark back (null: never)."""
    scopes: tuple[Literal["device", "site"], ...] = Field(SCOPES, min_length=1)
    """The keys windows are computed for: per device, per site."""

    @property
    def step(self) -> int:
        """Milliseconds between window starts (the hop, or the size when tumbling)."""
        return self.hop or self.size

    @property
    def tumbling(self) -> bool:
        """True when windows do not overlap (no hop, or hop == size)."""
        return self.hop is None or self.hop == self.size


class MuteWhen(Frozen):
    """Mute a rule while a channel is above/below a value, and for ``hold`` after.

    Example (cold chain): ``{channel: door_open, above: 0.5, hold: 5m}`` ignores the warm
    air of an open door until five minutes after it closes.
    """

    channel: Name
    """The channel watched."""
    above: Number | None = None
    """Mute while the channel is above this value."""
    below: Number | None = None
    """Mute while the channel is below this value."""
    hold: Duration = 0
    """Stay muted this long after the condition ends."""


class Severity(Frozen):
    """Score bands: below ``warning`` is info, from ``warning`` warning, from ``critical``
    critical."""

    warning: Number
    """Scores from this one are ``warning`` (below: ``info``)."""
    critical: Number
    """Scores from this one are ``critical``."""


class AnomalyRule(Frozen):
    """When scored readings become an incident.

    ``threshold`` overrides the model's; an incident opens after ``consecutive`` anomalous
    readings spanning at least ``min_duration``. ``device_types`` restricts the rule (empty:
    every type). ``mute_when`` conditions silence it (e.g. door open).
    """

    name: Name
    """The rule's name, carried by its alerts."""
    device_types: tuple[Name, ...] = ()
    """Only these device types (empty: every type)."""
    threshold: Number | None = None
    """Anomalous above this score (omitted: the model's threshold)."""
    consecutive: PositiveInt = 1
    """Anomalous readings in a row that open an incident."""
    min_duration: Duration = 0
    """How long those readings must span at least."""
    mute_when: tuple[MuteWhen, ...] = ()
    """Conditions that silence the rule (e.g. a reefer's door open)."""
    severity: Severity | None = None
    """Score bands of this rule's alerts (omitted: ``anomaly.severity``)."""


class Suppression(Frozen):
    """One incident, one alert: after an alert a (device, rule) stays quiet for ``cooldown``
    (the dedup window) except for updates at most every ``update_interval``; an alert lists
    at most ``max_trigger_ids`` triggering readings."""

    cooldown: Duration = 300_000
    """An incident takes anomalous readings within this of its last one; the first reading
    later resolves it (the dedup window of alerts)."""
    update_interval: PositiveDuration = 60_000
    """At most one ``update`` alert of an open incident per interval."""
    max_trigger_ids: PositiveInt = 50
    """Triggering readings an alert lists at most."""


class AnomalySpec(Frozen):
    """Anomaly rules, the default severity bands and suppression.

    Without ``severity`` (here or on a rule) every alert is a ``warning``: scores are model
    specific, so bands cannot have a meaningful default.
    """

    rules: tuple[AnomalyRule, ...] = Field((AnomalyRule(name="score"),), min_length=1)
    """The rules, each applied to every scored reading of its device types."""
    severity: Severity | None = None
    """Default score bands (omitted: every alert is a ``warning``)."""
    suppression: Suppression = Suppression()
    """One incident, one alert: cooldown and updates."""
