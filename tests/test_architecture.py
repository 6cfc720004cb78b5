"""The layering of docs/architecture.md holds: ``lint-imports`` keeps every contract of
``pyproject.toml`` (layers in data-flow order, stages that meet only in the wire, no cycles);
the tests import shared scaffolding only from ``tests.support``."""

from __future__ import annotations

import ast
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


TESTS = REPO / "tests"


def _imported_modules(path: Path, source: str) -> list[str]:
    """Every module an import statement of ``source`` (the file at ``path``) names, relative
    imports resolved against the file's package; ``from M import a, b`` names ``M.a`` and
    ``M.b`` (a name may be a submodule)."""
    package = path.relative_to(REPO).with_suffix("").parts[:-1]
    found: list[str] = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *([node.module] if node.module else [])])
            found += [f"{module}.{alias.name}" for alias in node.names]
    return found


def _foreign_imports(path: Path, source: str) -> list[str]:
    """The imports of a file under tests/ that reach another test module or a conftest: of
    ``tests``, only ``tests.support`` may be imported."""
    bad = []
    for module in _imported_modules(path, source):
        parts = module.split(".")
        if "conftest" in parts or (parts[0] == "tests" and parts[1:2] != ["support"]):
            bad.append(module)
    return bad


def test_tests_import_helpers_only_from_tests_support() -> None:
    """Shared test scaffolding lives in ``tests/support``: no file under tests/ imports from a
    test module or a conftest (fixtures reach tests through pytest, not imports)."""
    offences = [
        f"{path.relative_to(REPO)}: {module}"
        for path in sorted(TESTS.rglob("*.py"))
        for module in _foreign_imports(path, path.read_text())
    ]
    assert offences == []


def test_the_test_import_check_sees_what_it_forbids() -> None:
    here = TESTS / "test_ml" / "test_example.py"
    source = (
        "from tests.test_edge.test_gateway import GATEWAY\n"
        "from tests.conftest import stack\n"
        "from .conftest import NAB\n"
        "from . import kit\n"
        "import tests.test_cloud.reference\n"
        "def f():\n"
        "    from tests.test_forward import factories\n"
        "from tests.support import gateway\n"
        "from tests.support.records import alert\n"
        "from edgestream.core.ports import free_port\n"
    )
    assert _foreign_imports(here, source) == [
        "tests.test_edge.test_gateway.GATEWAY",
        "tests.conftest.stack",
        "tests.test_ml.conftest.NAB",
        "tests.test_ml.kit",
        "tests.test_cloud.reference",
        "tests.test_forward.factories",
    ]
