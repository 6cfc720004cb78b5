"""Checks across fields and files, run once every field of a topology is valid.

Each check reports ``(key path, got, expected)``; the loader adds file and line. This module
checks the edge side (gateways, sensors, features, models, windows, anomaly rules);
:mod:`.checks_cloud` the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgestream.core.topology.checks_cloud import check_cloud, check_forwarding
from edgestream.core.topology.explain import suggest
from edgestream.core.topology.fields import MAX_TOPIC_LENGTH, format_duration
from edgestream.core.topology.files import model_sidecar, onnx_signature, schema_records
from edgestream.core.topology.models import Topology
from edgestream.core.topology.report import (
    Finding,
    Loc,
    Report,
    checked_types,
    duplicates,
    known,
)

__all__ = ["Finding", "channel_mismatch", "check_topology"]


def check_topology(
    topology: Topology, raw: Any, *, check_files: bool, schemas: Path
) -> list[Finding]:
    """Every cross-reference problem of ``topology`` (``raw``: the YAML data it came from)."""
    report = Report(raw)
    _gateways(topology, report)
    _sensors(topology, report, schemas)
    _features(topology, report)
    _models(topology, report, check_files)
    _windows(topology, report)
    _anomaly(topology, report)
    check_forwarding(topology, report, check_files)
    check_cloud(topology, report)
    return report.findings


# --- gateways ------------------------------------------------------------------------------


def _gateways(t: Topology, r: Report) -> None:
    for index, first in duplicates([g.id for g in t.gateways]):
        r.add(("gateways", index, "id"), f"unique gateway ids (gateways[{first}] has it too)")
    topic_types = sorted({topic.device_type for topic in t.sensors.topics})
    for i, gateway in enumerate(t.gateways):
        for key in ("sites", "device_types", "devices"):
            for j, first in duplicates(list(getattr(gateway, key))):
                r.add(("gateways", i, key, j), f"each entry once (also at {key}[{first}])")
        for j, device_type in enumerate(gateway.device_types):
            if device_type not in topic_types:
                r.add(
                    ("gateways", i, "device_types", j),
                    f"a device type with a sensor topic (sensors.topics has: "
                    f"{known(topic_types)}){suggest(device_type, topic_types)}",
                )
    if len(t.gateways) < 2:
        return
    if all(g.canary for g in t.gateways):
        r.add(
            ("gateways",),
            "at least one gateway without canary: true (otherwise there is no staged rollout)",
            got="every gateway marked canary: true",
        )
        return
    canaries = set(t.canary_gateways())
    for device_type in checked_types(t):
        if not any(g.id in canaries and device_type in g.device_types for g in t.gateways):
            r.add(
                ("gateways",),
                f"a canary gateway serving {device_type!r} (mark one with canary: true) so its "
                "models are rolled out there first",
                got=f"no canary gateway ({known(sorted(canaries))}) serving {device_type!r}",
            )


# --- sensors ---------------------------------------------------------------------------------


def _sensors(t: Topology, r: Report, schemas: Path) -> None:
    topics = t.sensors.topics
    names = [topic.name for topic in topics]
    for index, first in duplicates(names):
        r.add(
            ("sensors", "topics", index, "name"),
            f"unique topic names (sensors.topics[{first}] has it too)",
        )
    derived = {f"{n}.{kind}": n for n in names for kind in ("dlq", "late")}
    served = set(t.device_types)
    records = schema_records(schemas) if schemas.is_dir() else {}
    channels_of: dict[str, int] = {}
    for i, topic in enumerate(topics):
        loc: Loc = ("sensors", "topics", i)
        if topic.name in derived:
            r.add(
                (*loc, "name"), f"a name that is not the DLQ/late topic of {derived[topic.name]!r}"
            )
        limit = MAX_TOPIC_LENGTH - len(".late")
        if len(topic.name) > limit:
            r.add((*loc, "name"), f"at most {limit} characters (so {topic.name}.late fits)")
        if topic.schema_ not in records:
            r.add(
                (*loc, "schema"),
                f"an Avro record in {schemas} (no .avsc there declares {topic.schema_!r}; "
                "set EDGESTREAM_SCHEMAS to the schemas folder)",
            )
        if topic.device_type not in served:
            r.add(
                (*loc, "device_type"),
                f"a device type some gateway serves ({known(sorted(served))})"
                + suggest(topic.device_type, sorted(served)),
            )
        for name, channel in topic.channels.items():
            if channel.min is not None and channel.max is not None and channel.min > channel.max:
                r.add((*loc, "channels", name, "max"), f"max >= min ({channel.min:g})")
        if not topic.required_channels:
            r.add((*loc, "channels"), "at least one channel with required: true")
        if topic.device_type in channels_of:
            j = channels_of[topic.device_type]
            other = topics[j]
            if list(other.channels) != list(topic.channels):
                r.add(
                    (*loc, "channels"),
                    f"the channels of sensors.topics[{j}] (same device type "
                    f"{topic.device_type!r}): {known(other.channels)}",
                    got=known(topic.channels),
                )
        else:
            channels_of[topic.device_type] = i


def _channels(t: Topology, device_type: str) -> dict[str, Any]:
    topics = t.topics_for(device_type)
    return dict(topics[0].channels) if topics else {}


def _has_topic(r: Report, loc: Loc, device_type: str, types: list[str]) -> bool:
    """``device_type`` has a sensor topic (one of ``types``); if not, a finding at ``loc``."""
    if device_type in types:
        return True
    r.add(
        loc,
        f"a device type with a sensor topic ({known(types)})" + suggest(device_type, types),
        got=repr(device_type),
    )
    return False


def _features(t: Topology, r: Report) -> None:
    types = sorted({topic.device_type for topic in t.sensors.topics})
    for device_type, features in t.features.items():
        loc: Loc = ("features", device_type)
        if not _has_topic(r, loc, device_type, types):
            continue
        if not features:
            r.add(loc, "at least one channel (the model's inputs, in order)")
        channels = _channels(t, device_type)
        for j, first in duplicates(list(features)):
            r.add((*loc, j), f"each channel once (also at [{first}])")
        for j, name in enumerate(features):
            if name not in channels:
                r.add(
                    (*loc, j),
                    f"a channel of device type {device_type!r} ({known(channels)})"
                    + suggest(name, list(channels)),
                )
            elif not channels[name].required:
                r.add((*loc, j), f"a required channel (channel {name!r} has required: false)")


# --- models ----------------------------------------------------------------------------------


def _models(t: Topology, r: Report, check_files: bool) -> None:
    for device_type in checked_types(t):
        if device_type not in t.models:
            r.add(
                ("models",),
                f"a model for every device type the gateways serve: add models.{device_type}",
                got=f"no model for {device_type!r}",
            )
    types = sorted({topic.device_type for topic in t.sensors.topics})
    for device_type, model in t.models.items():
        loc: Loc = ("models", device_type)
        if not _has_topic(r, loc, device_type, types):
            continue
        features = t.features_for(device_type)
        if model.inputs is not None and model.inputs != features:
            r.add(
                (*loc, "inputs"),
                f"the features of {device_type!r} in the same order: [{', '.join(features)}]",
            )
        if check_files and model.kind == "onnx":
            _model_file(t, device_type, r)


def channel_mismatch(model: tuple[str, ...], topology: tuple[str, ...]) -> str | None:
    """What differs between the channels a model reads and the topology's features.

    >>> channel_mismatch(("a", "b"), ("a", "c"))
    "the topology's features lack ['b'] (the model reads them); the model lacks ['c']"
    >>> channel_mismatch(("a", "b"), ("b", "a"))
    'same channels in another order: the model reads [a, b]'
    >>> channel_mismatch(("a",), ("a",)) is None
    True
    """
    if model == topology:
        return None
    lacking = [c for c in model if c not in topology]
    extra = [c for c in topology if c not in model]
    if not lacking and not extra:
        return f"same channels in another order: the model reads [{', '.join(model)}]"
    parts = []
    if lacking:
        parts.append(f"the topology's features lack {lacking} (the model reads them)")
    if extra:
        parts.append(f"the model lacks {extra}")
    return "; ".join(parts)


def _model_file(t: Topology, device_type: str, r: Report) -> None:
    model = t.models[device_type]
    loc: Loc = ("models", device_type, "path")
    path = t.model_path(device_type)
    if not path.is_file():
        r.add(loc, f"an existing ONNX file (looked for {path}; paths are relative to the topology)")
        return
    try:
        signature = onnx_signature(path)
        sidecar = model_sidecar(path)
    except ValueError as error:
        r.add(loc, f"an ONNX model onnxruntime can load, with a valid sidecar ({error})")
        return
    channels = t.model_inputs(device_type)
    if sidecar is None:
        width, columns = len(channels), f"columns: {', '.join(channels)}"
    else:
        trained_on = tuple(str(c) for c in sidecar.get("channels") or channels)
        mismatch = channel_mismatch(trained_on, channels)
        if mismatch is not None:
            r.add(
                loc,
                f"a model reading the features of {device_type!r}: [{', '.join(channels)}]",
                got=f"a model reading [{', '.join(trained_on)}] (its sidecar "
                f"{path.with_suffix('.json').name}: {mismatch})",
            )
            return
        width = len(sidecar["inputs"])
        columns = f"features derived from {', '.join(channels)} per its sidecar"
    want = f"one float tensor {model.input_name!r} of shape [N, {width}]"
    if len(signature.inputs) != 1:
        got = f"a model with inputs {known(signature.inputs)}"
        r.add(loc, f"{want} ({columns})", got=got)
    else:
        ((name, (kind, shape)),) = signature.inputs.items()
        size = shape[-1] if len(shape) == 2 else None
        fits = kind == "tensor(float)" and len(shape) == 2
        fits = fits and (not isinstance(size, int) or size == width)
        if name != model.input_name or not fits:
            dims = ", ".join("N" if not isinstance(d, int) else str(d) for d in shape)
            got = f"a model whose input {name!r} is {kind} of shape [{dims}]"
            r.add(loc, f"{want} ({columns}; set input_name)", got=got)
    if model.output not in signature.outputs:
        r.add(
            (*loc[:-1], "output"),
            f"an output of {path.name} ({known(signature.outputs)})"
            + suggest(model.output, list(signature.outputs)),
        )


# --- windows and anomaly rules ---------------------------------------------------------------


def _windows(t: Topology, r: Report) -> None:
    for i, window in enumerate(t.windows):
        loc: Loc = ("windows", i)
        if window.hop is not None and window.hop > window.size:
            r.add((*loc, "hop"), f"a hop <= size ({format_duration(window.size)})")
        elif window.hop is not None and window.size % window.hop:
            r.add(
                (*loc, "hop"),
                f"a hop that divides size {format_duration(window.size)} evenly",
            )
        for j, first in duplicates(list(window.scopes)):
            r.add((*loc, "scopes", j), f"each scope once (also at [{first}])")
    shapes = [(w.size, w.step) for w in t.windows]
    for index, first in duplicates(shapes):
        r.add(("windows", index), f"distinct windows (windows[{first}] has the same size and hop)")


def _anomaly(t: Topology, r: Report) -> None:
    spec = t.anomaly
    served = list(t.device_types)
    for index, first in duplicates([rule.name for rule in spec.rules]):
        r.add(("anomaly", "rules", index, "name"), f"unique rule names (rules[{first}])")
    if spec.severity is not None:
        _severity(spec.severity, ("anomaly", "severity"), r)
    for i, rule in enumerate(spec.rules):
        loc: Loc = ("anomaly", "rules", i)
        for j, device_type in enumerate(rule.device_types):
            if device_type not in served:
                r.add(
                    (*loc, "device_types", j),
                    f"a device type the gateways serve ({known(served)})"
                    + suggest(device_type, served),
                )
        if rule.severity is not None:
            _severity(rule.severity, (*loc, "severity"), r)
        with_topic = checked_types(t)
        types = [d for d in (rule.device_types or served) if d in with_topic]
        for j, mute in enumerate(rule.mute_when):
            if (mute.above is None) == (mute.below is None):
                r.add((*loc, "mute_when", j), "exactly one of above: or below:")
            for device_type in types:
                channels = _channels(t, device_type)
                if mute.channel not in channels:
                    r.add(
                        (*loc, "mute_when", j, "channel"),
                        f"a channel of device type {device_type!r} ({known(channels)}); "
                        "limit the rule with device_types" + suggest(mute.channel, list(channels)),
                    )


def _severity(severity: Any, loc: Loc, r: Report) -> None:
    if severity.critical < severity.warning:
        r.add((*loc, "critical"), f"critical >= warning ({severity.warning:g})")
