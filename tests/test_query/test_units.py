"""Pure parts of the query layer: row decoding, table references, Flink error messages."""

from __future__ import annotations

import numpy as np
import pytest

import edgestream.cli.query as cli_query
import edgestream.core.tables as tables_module
import edgestream.query.catalog as catalog_module
import edgestream.query.decode as decode_module
import edgestream.query.engine as engine_module
from edgestream.query.decode import ALERT_COLUMNS, SUMMARY_COLUMNS, alert_row, summary_row
from edgestream.query.engine import flink_message
from tests.support.doctests import run_doctests
from tests.support.records import alert, summary

FRAME = "\tat org.apache.flink.table.api.internal.TableEnvironmentImpl.executeSql(Impl.java:730)"
WHERE = "From line 1, column 8 to line 1, column 11: "
JAVA_ERROR = "\n".join(
    [
        "org.apache.flink.table.api.ValidationException: SQL validation failed. "
        + WHERE
        + "Column 'nope' not found in any table",
        FRAME,
        "Caused by: org.apache.calcite.runtime.CalciteContextException: "
        + WHERE
        + "Column 'nope' not found in any table",
        FRAME,
        "\t... 12 more",
        "Caused by: org.apache.calcite.sql.validate.SqlValidatorException: "
        + "Column 'nope' not found in any table",
        FRAME,
        "\t... 30 more",
    ]
)


def test_flink_message_is_the_root_cause_without_frames() -> None:
    assert flink_message(Exception(JAVA_ERROR)) == "Column 'nope' not found in any table"
    assert flink_message(Exception("plain words")) == "plain words"


def test_summary_rows_match_the_columns_and_the_numpy_reference() -> None:
    values = np.array([1.5, 2.25, 4.0, 0.5])
    record = summary("p-1", 0, {"pressure": values}, anomalies=2)
    record["channels"]["pressure"].update(mean=None, std=None)  # derived on the cloud wire
    row = dict(zip([c for c, _ in SUMMARY_COLUMNS], summary_row(record), strict=True))
    assert row["readings"] == 4 and row["anomalies"] == 2
    assert row["channel_mean"]["pressure"] == pytest.approx(values.mean(), abs=1e-12)
    assert row["channel_std"]["pressure"] == pytest.approx(values.std(), abs=1e-12)
    assert (row["channel_min"]["pressure"], row["channel_max"]["pressure"]) == (0.5, 4.0)


def test_alert_rows_match_the_columns() -> None:
    row = dict(zip([c for c, _ in ALERT_COLUMNS], alert_row(alert("d", 5)), strict=True))
    assert (row["device_id"], row["ts_ms"], row["channels"]) == ("d", 5, {"pressure": 3.0})


@pytest.mark.parametrize(
    "module", [catalog_module, decode_module, engine_module, tables_module, cli_query]
)
def test_docstring_examples_run(module: object) -> None:
    run_doctests(module)
