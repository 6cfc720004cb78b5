"""The alert filter and the table printer (pure logic)."""

from __future__ import annotations

import pytest

import edgestream.alerts.filters as filters_module
import edgestream.cli.alerts as cli_alerts
from edgestream.alerts import AlertFilter, AlertsError
from tests.support.doctests import run_doctests
from tests.support.records import alert


def _alert(site: str, device: str, severity: str, ts: int) -> dict:
    return {**alert(device, ts), "site": site, "severity": severity}


def test_each_criterion_and_their_conjunction() -> None:
    records = [
        _alert(site, device, sev, ts)
        for site in ("a", "b")
        for device in ("d1", "d2")
        for sev in ("info", "warning", "critical")
        for ts in (1_000, 9_000)
    ]
    f = AlertFilter.build(site="a", device=["d2"], min_severity="warning", since=2_000,
                          now_ms=10_000)  # fmt: skip
    kept = [r for r in records if f.matches(r)]
    assert {(r["site"], r["device_id"], r["severity"], r["ts"]) for r in kept} == {
        ("a", "d2", "warning", 9_000),
        ("a", "d2", "critical", 9_000),
    }
    assert all(AlertFilter().matches(r) for r in records)
    assert sum(AlertFilter.build(min_severity="critical").matches(r) for r in records) == 8
    assert sum(AlertFilter.build(site=["a", "b"]).matches(r) for r in records) == 24


def test_since_is_a_duration_back_from_now() -> None:
    f = AlertFilter.build(since="15m", now_ms=3_600_000)
    assert f.since_ms == 3_600_000 - 900_000
    assert not f.matches(_alert("a", "d", "info", 2_699_999))
    assert f.matches(_alert("a", "d", "info", 2_700_000))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_severity": "urgent"}, "--min-severity 'urgent': expected one of info, warning"),
        ({"since": "yesterday"}, "--since 'yesterday': expected a duration like 30s"),
        ({"since": "-5m"}, "--since '-5m': expected a duration"),
    ],
)
def test_bad_filter_values_say_what_to_give(kwargs: dict, message: str) -> None:
    with pytest.raises(AlertsError, match="^" + message.replace("(", r"\(")):
        AlertFilter.build(**kwargs)


def test_table_row_fits_the_header() -> None:
    record = {**_alert("plant-with-a-very-long-name", "d1", "critical", 0), "score": 0.5}
    row, header = cli_alerts.table_row(record), cli_alerts.table_header()
    assert row.split()[2] == "critical"
    assert header.index("severity") == row.index("critical")
    assert "plant-with-a-v " in row  # cut to the column width


@pytest.mark.parametrize("module", [filters_module, cli_alerts])
def test_docstring_examples_run(module: object) -> None:
    run_doctests(module)
