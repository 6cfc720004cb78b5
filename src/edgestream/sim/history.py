"""Recorded sensor history: multichannel CSV or Parquet files, read and written.

A history file has one row per reading:

* ``timestamp`` (or ``ts``): ISO-8601 / ``YYYY-MM-DD HH:MM:SS`` text (UTC unless it names a
  zone), a Parquet timestamp, or a number: epoch milliseconds;
* optional ``device_id`` (or ``device``) and ``site``; without a device column every row is
  one device (named by the caller);
* optional ``label``: > 0 marks an anomalous reading (runs of them are anomaly episodes);
* every other column is a channel. ``mapping`` renames columns to channels (``col=channel``);
  with ``channels`` given (a topology's channels of the device type) a column that maps to
  none of them is an error, and so is a required channel no column gives.

Rows keep the file's order (a timestamp that goes back is kept: the original sensor sent it
late). Every error is one line naming the file, the row and the column. Rows are numbered as
a spreadsheet shows a CSV (the header is row 1, the first reading row 2); a Parquet file has
no header row, its first reading is row 1.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "plant.csv"
>>> _ = path.write_text(
...     "timestamp,device_id,temp,amps,label\\n"
...     "2024-06-10 06:13:21,c-1,20.5,3.0,0\\n"
...     "2024-06-10 06:13:20,c-1,20.4,3.1,1\\n")
>>> h = read_history(path, mapping={"amps": "current"})
>>> h.channels, h.ts.tolist(), h.labels.tolist()
(('temp', 'current'), [1718000001000, 1718000000000], [False, True])
>>> _ = path.write_text("timestamp,temp\\n2024-06-10 06:13:20,20.4\\n2024-06-10 06:13:21,x\\n")
>>> read_history(path, device_id="c-1")
Traceback (most recent call last):
...
edgestream.sim.exceptions.ReplayError: plant.csv: row 3, column 'temp': 'x' is not a number
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgestream.sim.exceptions import ReplayError

__all__ = ["History", "parse_mapping", "read_history", "write_history"]

TIMESTAMP_COLUMNS = ("timestamp", "ts")
DEVICE_COLUMNS = ("device_id", "device")
SITE_COLUMN = "site"
LABEL_COLUMN = "label"


@dataclass(frozen=True)
class History:
    """Readings of a history file in file order (arrays of one row per reading)."""

    source: str
    device_id: np.ndarray  # (n,) str (object)
    site: np.ndarray | None  # (n,) str (object), None: no site column
    ts: np.ndarray  # (n,) int64 event time, epoch ms
    values: np.ndarray  # (n, len(channels)) float64
    channels: tuple[str, ...]
    labels: np.ndarray | None  # (n,) bool, None: no label column

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def devices(self) -> tuple[str, ...]:
        """Device ids in order of their first row."""
        return tuple(dict.fromkeys(self.device_id.tolist()))

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """The value columns of ``names``, in that order."""
        return self.values[:, [self.channels.index(c) for c in names]]


def parse_mapping(items: Sequence[str]) -> dict[str, str]:
    """``["col=channel", ...]`` (the ``--map`` options) as a dict.

    >>> parse_mapping(["amps=current", " t = temp "])
    {'amps': 'current', 't': 'temp'}
    """
    out: dict[str, str] = {}
    for item in items:
        column, sep, channel = item.partition("=")
        if not sep or not column.strip() or not channel.strip():
            raise ReplayError(f"--map {item!r}: expected COLUMN=CHANNEL")
        out[column.strip()] = channel.strip()
    return out


def read_history(
    path: Path | str,
    *,
    channels: Sequence[str] | None = None,
    required: Sequence[str] | None = None,
    mapping: Mapping[str, str] | None = None,
    device_id: str | None = None,
    extra_columns: str = "error",
) -> History:
    """Read a CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``) history file.

    ``channels``: the channels the file may give (``None``: every other column is one);
    ``required``: channels it must give (default: all of ``channels``); ``mapping``:
    column -> channel renames; ``device_id``: the device of a file without a device column
    (without both: an error); ``extra_columns``: ``"error"`` or ``"ignore"`` for columns that
    map to no channel of ``channels``.
    """
    path = Path(path)
    name = path.name
    frame, header_rows = _read_frame(path)
    columns = [str(c) for c in frame.columns]
    mapping = dict(mapping or {})
    stamp, device = _role_columns(name, columns, mapping, device_id)
    roles = {stamp, device, SITE_COLUMN, LABEL_COLUMN} - {None}
    picked = _pick_channels(name, columns, roles, mapping, channels, required, extra_columns)
    got = [ch for _, ch in picked]
    values = np.column_stack(
        [_numbers(frame[col], name, col, header_rows) for col, _ in picked]
    ).astype(np.float64)
    ts = _timestamps(frame[stamp], name, stamp, header_rows)
    ids = (
        _text(frame[device], name, device, header_rows)
        if device is not None
        else np.full(len(frame), device_id, dtype=object)
    )
    sites = (
        _text(frame[SITE_COLUMN], name, SITE_COLUMN, header_rows)
        if SITE_COLUMN in columns
        else None
    )
    labels = None
    if LABEL_COLUMN in columns and LABEL_COLUMN not in mapping:
        labels = _numbers(frame[LABEL_COLUMN], name, LABEL_COLUMN, header_rows) > 0
    return History(str(path), ids, sites, ts, values, tuple(got), labels)


def _role_columns(
    name: str, columns: list[str], mapping: dict[str, str], device_id: str | None
) -> tuple[str, str | None]:
    """The timestamp and device columns (None: the file's device is ``device_id``); every
    mapped column must exist."""
    for column in mapping:
        if column not in columns:
            raise ReplayError(
                f"{name}: row 1, column {column!r}: no such column to map (columns: "
                f"{', '.join(columns)})"
            )
    stamp = next((c for c in TIMESTAMP_COLUMNS if c in columns), None)
    if stamp is None:
        raise ReplayError(
            f"{name}: row 1, column 'timestamp': missing (a history file needs a timestamp "
            f"column; columns: {', '.join(columns)})"
        )
    device = next((c for c in DEVICE_COLUMNS if c in columns), None)
    if device is None and not device_id:
        raise ReplayError(
            f"{name}: row 1, column 'device_id': missing; name the file's device with "
            "--device-id ID (or add a device_id column)"
        )
    return stamp, device


def _pick_channels(
    name: str,
    columns: list[str],
    roles: set[str | None],
    mapping: dict[str, str],
    channels: Sequence[str] | None,
    required: Sequence[str] | None,
    extra_columns: str,
) -> list[tuple[str, str]]:
    """(column, channel) of each channel column: known channels, none twice, every
    required one present."""
    picked: list[tuple[str, str]] = []  # (column, channel)
    for column in columns:
        if column in roles and column not in mapping:
            continue
        channel = mapping.get(column, column)
        if channels is not None and channel not in channels:
            if extra_columns == "ignore":
                continue
            hint = f" (mapped from {column!r})" if column in mapping else ""
            raise ReplayError(
                f"{name}: row 1, column {column!r}: unknown channel {channel!r}{hint}; the "
                f"device type has {', '.join(channels)} (rename with --map {column}=CHANNEL "
                "or drop the column)"
            )
        picked.append((column, channel))
    got = [ch for _, ch in picked]
    for channel in sorted({c for c in got if got.count(c) > 1}):
        cols = [col for col, ch in picked if ch == channel]
        raise ReplayError(f"{name}: row 1, column {cols[1]!r}: channel {channel!r} given twice")
    needed = list(required if required is not None else (channels or ()))
    missing = [c for c in needed if c not in got]
    if missing:
        raise ReplayError(
            f"{name}: row 1, column {missing[0]!r}: missing (the device type needs "
            f"{', '.join(needed)}; map a column with --map COLUMN={missing[0]})"
        )
    if not picked:
        raise ReplayError(f"{name}: row 1: no channel columns (columns: {', '.join(columns)})")
    return picked


def write_history(path: Path | str, history: History) -> Path:
    """Write ``history`` as CSV or Parquet (by the suffix), epoch-ms timestamps; returns it."""
    import pandas as pd

    path = Path(path)
    data: dict[str, Any] = {"timestamp": history.ts, "device_id": history.device_id}
    if history.site is not None:
        data["site"] = history.site
    for k, channel in enumerate(history.channels):
        data[channel] = history.values[:, k]
    if history.labels is not None:
        data["label"] = history.labels.astype(np.int8)
    frame = pd.DataFrame(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_parquet(path):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _read_frame(path: Path) -> tuple[Any, int]:
    """The file as a DataFrame and the rows before the first reading (CSV header: 1)."""
    import pandas as pd

    try:
        if _is_parquet(path):
            return pd.read_parquet(path), 0
        return pd.read_csv(path, float_precision="round_trip", skipinitialspace=True), 1
    except FileNotFoundError:
        raise ReplayError(f"{path}: no such file") from None
    except OSError as error:
        raise ReplayError(f"{path}: cannot read it ({error.strerror or error})") from None
    except (ValueError, pd.errors.ParserError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ReplayError(f"{path.name}: not a readable CSV or Parquet file ({first})") from None


def _bad(name: str, index: int, header_rows: int, column: str, what: str) -> ReplayError:
    return ReplayError(f"{name}: row {index + header_rows + 1}, column {column!r}: {what}")


def _numbers(series: Any, name: str, column: str, header_rows: int) -> np.ndarray:
    import pandas as pd

    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna().to_numpy() | ~np.isfinite(numbers.to_numpy(np.float64, na_value=np.nan))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        cell = series.iloc[i]
        empty = cell is None or (isinstance(cell, float) and np.isnan(cell)) or str(cell) == ""
        what = "empty cell" if empty else f"{cell!r} is not a number"
        raise _bad(name, i, header_rows, column, what)
    return numbers.to_numpy(np.float64)


def _timestamps(series: Any, name: str, column: str, header_rows: int) -> np.ndarray:
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series):
        stamps = series.dt.tz_convert("UTC") if series.dt.tz is not None else series
        moments = stamps
    elif pd.api.types.is_numeric_dtype(series):
        return _numbers(series, name, column, header_rows).round().astype(np.int64)
    else:
        moments = pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
    missing = moments.isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise _bad(
            name,
            i,
            header_rows,
            column,
            f"{series.iloc[i]!r} is not a time (e.g. 2024-06-10 06:13:20 or epoch ms)",
        )
    naive = moments.dt.tz_localize(None) if moments.dt.tz is not None else moments
    return naive.to_numpy().astype("datetime64[ms]").astype(np.int64)


def _text(series: Any, name: str, column: str, header_rows: int) -> np.ndarray:
    values = series.astype(object).to_numpy()
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "":
            raise _bad(name, i, header_rows, column, "empty cell")
    return np.array([str(v).strip() for v in values], dtype=object)
