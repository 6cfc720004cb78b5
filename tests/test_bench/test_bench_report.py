"""``edgestream bench report``: saved results -> the README's bench section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgestream.bench.results import END, START, load_results, save_result
from edgestream.cli.bench import app
from edgestream.core.exceptions import EdgestreamError

MACHINE = {"cpu_model": "Test CPU 3000", "cpu_count": 2, "cpu_usable": 2, "memory_mb": 7936,
           "load_avg_1m": 1.25}  # fmt: skip


def e2e_result(ratio: float, met: bool) -> dict:
    return {
        "bench": "e2e",
        "machine": MACHINE,
        "params": {"devices": 50},
        "cloud_to_raw_ratio": ratio,
        "drain_rate_vs_live": 35.61,
        "p99_reading_to_cloud_alert_ms": 249.4,
        "goals": {"cloud_to_raw_ratio<=0.01": met, "drain_rate_vs_live>=10": True},
    }


def test_report_rewrites_only_the_marked_section(tmp_path: Path) -> None:
    results = tmp_path / "results"
    save_result(e2e_result(0.0198, False), results)
    save_result(e2e_result(0.0091, True), results)  # the last run wins
    save_result({"bench": "swap", "machine": MACHINE, "ratios": {"sql_vs_raw": 0.5},
                 "records_per_s": 12345.0}, results)  # fmt: skip
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{START}\nstale table\n{END}\nafter\n")
    out = CliRunner().invoke(app, ["report", "--readme", str(readme), "--results", str(results)])
    assert out.exit_code == 0, out.output
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n" + START) and text.endswith(END + "\nafter\n")
    assert "stale table" not in text
    assert "| e2e | cloud bytes / raw sensor bytes | 0.0091 | <= 0.01: met |" in text
    assert "| e2e | drain rate after outage vs live | 35.6x | >= 10x: met |" in text
    assert "| swap | sql vs raw | 0.5x |" in text and "| swap | records per s | 1.234e+04 |" in text
    assert "Test CPU 3000, 2 cores, 7.8 GB RAM" in text
    assert text.index("| e2e |") < text.index("| swap |")  # pipeline order
    assert f"`edgestream bench report --readme {readme.as_posix()}` (not typed" in text
    again = CliRunner().invoke(app, ["report", "--readme", str(readme), "--results", str(results)])
    assert again.exit_code == 0 and readme.read_text() == text  # idempotent


def test_report_errors_say_what_to_do(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    out = CliRunner().invoke(app, ["report", "--results", str(tmp_path / "none")])
    assert isinstance(out.exception, EdgestreamError) and "bench edge --json" in str(out.exception)
    save_result(e2e_result(0.02, False), tmp_path)
    out = CliRunner().invoke(app, ["report", "--readme", str(readme), "--results", str(tmp_path)])
    assert isinstance(out.exception, EdgestreamError) and "markers" in str(out.exception)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(EdgestreamError, match=r"broken\.json"):
        load_results(tmp_path)


def test_save_dir_option_and_json_line_match(tmp_path: Path, monkeypatch) -> None:
    from edgestream.bench.common import emit_json
    from edgestream.bench.results import SAVE_DIR_ENV

    monkeypatch.setenv(SAVE_DIR_ENV, str(tmp_path))
    result = e2e_result(0.01, True)
    emit_json(result)
    saved = json.loads((tmp_path / "e2e.json").read_text())
    assert saved.pop("saved_at") and saved == result
