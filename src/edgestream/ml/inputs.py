"""Does each model of a topology read what the topology feeds it? (``edgestream validate``)

The topology's checks (:mod:`edgestream.core.topology.checks`) compare a model file's
signature and its sidecar's ``channels`` with the device type's features. This module reads
the sidecar the way the gateway does (:class:`~edgestream.ml.artifact.ModelMeta` and the
feature extractor it describes) and names what does not fit:

* the channels the model's feature extractor reads against the topology's ``features`` of
  the type: which are missing, which are extra, or the order;
* the sidecar's ``inputs`` against the feature columns its extractor derives;
* the device type the model was trained for;
* the ONNX file's sha256 against the sidecar's.

>>> from edgestream.core.paths import topologies_dir
>>> from edgestream.core.topology import load_topology
>>> model_input_problems(load_topology(topologies_dir() / "default.yaml"))
[]
"""

from __future__ import annotations

from edgestream.core.topology import Topology, TopologyError
from edgestream.core.topology.checks import channel_mismatch
from edgestream.core.topology.errors import Problem
from edgestream.ml.artifact import load_meta, sha256_hex, sidecar_path
from edgestream.ml.exceptions import ArtifactError
from edgestream.ml.features import FeatureExtractor

__all__ = ["check_model_inputs", "model_input_problems"]


def model_input_problems(topology: Topology) -> list[Problem]:
    """Every model whose sidecar does not fit ``topology`` (models without a sidecar and
    ``kind: online`` models are the topology checks' business)."""
    where = str(topology.source) if topology.source is not None else topology.name
    out: list[Problem] = []
    for device_type, spec in topology.models.items():
        if spec.kind != "onnx":
            continue
        path = topology.model_path(device_type)
        if not path.is_file() or not sidecar_path(path).is_file():
            continue
        key = f"models.{device_type}"

        def problem(message: str, key: str = key) -> None:
            out.append(Problem(where, None, key, message))

        try:
            meta = load_meta(path)
        except ArtifactError as error:
            problem(str(error))
            continue
        if meta.device_type and meta.device_type != device_type:
            problem(
                f"{path.name} was trained for device type {meta.device_type!r}, not "
                f"{device_type!r} (train one with `edgestream models train --device-type "
                f"{device_type}`)"
            )
        if meta.features.get("kind"):  # another extractor (the in-stream detector's)
            continue
        extractor = FeatureExtractor.from_config(meta.features) if meta.features else None
        reads = extractor.channels if extractor is not None else (meta.channels or meta.inputs)
        wanted = topology.model_inputs(device_type)
        mismatch = channel_mismatch(reads, wanted)
        if mismatch is not None:
            problem(
                f"{path.name} reads channels [{', '.join(reads)}], features.{device_type} is "
                f"[{', '.join(wanted)}]: {mismatch}"
            )
        derived = extractor.feature_names if extractor is not None else meta.inputs
        if derived != meta.inputs:
            problem(
                f"{sidecar_path(path).name}: inputs {list(meta.inputs)} are not the "
                f"{len(derived)} feature columns its feature config derives {list(derived)}"
            )
        digest = sha256_hex(path.read_bytes())
        if digest != meta.sha256:
            problem(
                f"{path.name}: sha256 {digest[:12]}... is not its sidecar's "
                f"{meta.sha256[:12]}... (the file changed or the sidecar belongs to another)"
            )
    return out


def check_model_inputs(topology: Topology) -> None:
    """Raise :class:`TopologyError` listing :func:`model_input_problems` if there are any."""
    problems = model_input_problems(topology)
    if problems:
        raise TopologyError(problems)
