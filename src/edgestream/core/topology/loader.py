"""``load_topology``: YAML file -> validated, frozen :class:`Topology`, or every problem at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edgestream.core.paths import schemas_dir, topologies_dir
from edgestream.core.topology.checks import check_topology
from edgestream.core.topology.errors import NeededEnv, Problem, TopologyError
from edgestream.core.topology.explain import explain
from edgestream.core.topology.fields import DEFER_ENV, unset_env
from edgestream.core.topology.models import Topology
from edgestream.core.topology.yamlsrc import YamlSource, render_path

__all__ = ["EXTENSION_PREFIX", "load_topology"]

#: Top-level keys starting with this are ignored: a place for YAML anchors (``x-defaults: &d``).
EXTENSION_PREFIX = "x-"


# long: two thirds of it is the docstring and its runnable example; the code is 30 lines
def load_topology(
    path: str | Path, *, check_files: bool = True, defer_env: bool = False
) -> Topology:
    """Load and validate a topology file.

    The YAML is read safely, validated field by field (unknown keys are errors), then checked
    across references: device types have sensor topics, features are channels, model inputs
    match features, schemas exist, topic names are valid and distinct, windows are well
    formed, ... With ``check_files`` (default) the model files must exist and their ONNX
    signature must fit, and TLS files must exist; pass ``False`` to validate a topology whose
    files are produced elsewhere. ``${ENV_VAR}`` references in secrets, bootstrap servers and
    URLs are resolved from the environment now; with ``defer_env`` a value that references an
    unset variable (without a default) is kept as written, not checked, and listed in
    :attr:`Topology.needed_env` (``edgestream validate``: needed at deploy time). Top-level keys starting with ``x-`` are
    ignored (a home for YAML anchors).

    Raises :class:`TopologyError` listing every problem as
    ``FILE:LINE: key.path: got <value>; expected <what>``.

    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "mini.yaml")
    >>> _ = open(path, "w").write('''
    ... name: mini
    ... gateways:
    ...   - {id: gw-1, sites: plant-a, device_types: [pump]}
    ... sensors:
    ...   topics:
    ...     - name: sensors.pump
    ...       device_type: pump
    ...       channels: {vibration_rms: {unit: mm/s, min: 0, max: 50}, bearing_temp: {}}
    ... models:
    ...   pump: {name: pump-iforest, path: pump.onnx, threshold: 0.6}
    ... windows:
    ...   - {size: 10s, allowed_lateness: 2s}
    ... ''')
    >>> topology = load_topology(path, check_files=False)
    >>> topology.model_inputs("pump"), topology.windows[0].size, topology.forwarding.compression
    (('vibration_rms', 'bearing_temp'), 10000, 'zstd')
    >>> _ = open(path, "a").write("forwarding: {compresion: lz4}\\n")
    >>> load_topology(path, check_files=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgestream.core.topology.errors.TopologyError: .../mini.yaml:14: forwarding.compresion: got the unknown key 'compresion'; expected one of: ...; did you mean 'compression'?
    """  # noqa: E501
    file = Path(path)
    shown = str(path)
    text = _read(file, shown)
    try:
        source = YamlSource(shown, text)
    except yaml.YAMLError as error:
        raise TopologyError([_yaml_problem(shown, error)]) from None
    problems = source.duplicate_keys()
    if not isinstance(source.data, dict):
        got = "an empty file" if source.data is None else f"a {type(source.data).__name__}"
        expected = "a mapping with at least name, gateways and sensors"
        raise TopologyError([Problem(shown, 1, "(top level)", f"got {got}; expected {expected}")])
    data = {k: v for k, v in source.data.items() if not str(k).startswith(EXTENSION_PREFIX)}
    deferred: set[str] | None = set() if defer_env else None
    try:
        context = {DEFER_ENV: deferred} if deferred is not None else None
        topology = Topology.model_validate(data, context=context).with_source(file)
    except ValidationError as error:
        raise TopologyError(problems + explain(error, Topology, source)) from None
    findings = check_topology(topology, source.data, check_files=check_files, schemas=schemas_dir())
    for finding in findings:
        line = source.line_of(finding.loc)
        message = f"got {finding.got}; expected {finding.expected}"
        problems.append(Problem(shown, line, render_path(finding.loc), message))
    if problems:
        raise TopologyError(sorted(problems, key=lambda p: (p.line or 0, p.path)))
    return topology.with_needed_env(_needed(data, deferred, source)) if deferred else topology


def _needed(data: object, deferred: set[str], source: YamlSource) -> tuple[NeededEnv, ...]:
    """Where the values validation deferred are, one entry per variable and key path."""
    found: list[NeededEnv] = []

    def walk(node: object, loc: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*loc, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, (*loc, i))
        elif isinstance(node, str) and node in deferred:
            line, path = source.line_of(loc), render_path(loc)
            found.extend(NeededEnv(name, source.file, line, path) for name in unset_env(node))

    walk(data, ())
    return tuple(found)


def _read(file: Path, shown: str) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = f"check the path (the examples are in {topologies_dir()})"
        raise TopologyError([Problem(shown, None, "", f"no such topology file: {hint}")]) from None
    except IsADirectoryError:
        raise TopologyError([Problem(shown, None, "", "is a folder, not a YAML file")]) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise TopologyError([Problem(shown, None, "", f"cannot read it: {reason}")]) from None


def _yaml_problem(shown: str, error: yaml.YAMLError) -> Problem:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    reason = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    message = f"invalid YAML: {reason}" + (f" ({context})" if context else "")
    if mark is None:
        return Problem(shown, None, "", message)
    return Problem(shown, mark.line + 1, "", message, column=mark.column + 1)
