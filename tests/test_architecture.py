"""The layering of docs/architecture.md holds: ``lint-imports`` keeps every contract of
``pyproject.toml`` (layers in data-flow order, stages that meet only in the wire, no cycles)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "edgestream"


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports --no-cache ARGS`` on this checkout's source."""
    script = Path(sys.executable).with_name("lint-imports")
    if script.exists():
        command = [str(script)]
    else:  # the same entry point, when the venv has no console script
        run = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
        command = [sys.executable, "-c", run]
    path = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [*command, "--no-cache", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_contracts_are_kept() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout, result.stdout[-3000:]


def test_a_broken_contract_fails(tmp_path: Path) -> None:
    """The check sees real imports: a contract the code breaks (the edge imports core) fails."""
    config = tmp_path / "broken.toml"
    config.write_text(
        "[tool.importlinter]\n"
        'root_package = "edgestream"\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "the edge does not import core"\n'
        'type = "forbidden"\n'
        'source_modules = ["edgestream.edge"]\n'
        'forbidden_modules = ["edgestream.core"]\n'
    )
    result = lint_imports("--config", str(config))
    assert result.returncode != 0, result.stdout[-3000:]
    assert "edgestream.edge" in result.stdout and "BROKEN" in result.stdout


def test_every_package_is_a_regular_package() -> None:
    """A folder of modules without ``__init__.py`` is a namespace package, which the import
    analysis does not see (``forward/`` was one, so its imports went unchecked)."""
    missing = [
        str(folder.relative_to(SRC))
        for folder in [SRC, *SRC.rglob("*")]
        if folder.is_dir() and any(folder.glob("*.py")) and not (folder / "__init__.py").exists()
    ]
    assert missing == []
