"""Where edgestream keeps its files and where it finds the files it ships."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_REPO_ROOT = _PACKAGE_DIR.parent.parent


def home_dir() -> Path:
    """Root of edgestream's own state: ``$EDGESTREAM_HOME`` or ``~/.edgestream``."""
    return Path(os.environ.get("EDGESTREAM_HOME", Path.home() / ".edgestream")).expanduser()


def stack_dir() -> Path:
    """Data dir of the embedded stack (state file, logs, registry database)."""
    return home_dir() / "stack"


def _shipped(name: str) -> Path:
    """A folder shipped with the project: in the wheel under ``_data/``, else the repo root."""
    packaged = _PACKAGE_DIR / "_data" / name
    if packaged.is_dir():
        return packaged
    return _REPO_ROOT / name


def schemas_dir() -> Path:
    """Folder of the Avro ``.avsc`` files (``$EDGESTREAM_SCHEMAS`` overrides)."""
    override = os.environ.get("EDGESTREAM_SCHEMAS")
    return Path(override) if override else _shipped("schemas")


def topologies_dir() -> Path:
    """Folder of the example topologies."""
    return _shipped("topologies")
