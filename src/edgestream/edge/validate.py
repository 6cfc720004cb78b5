"""Validation of sensor records: decode, schema, device type, channels, values, clock, size.

A batch of raw Kafka values goes in; out come the valid readings as columns (numpy) and one
:class:`Rejected` per invalid message with a machine-readable reason. Nothing raises on bad
input: the gateway sends rejected messages to ``<topic>.dlq`` as :func:`dead_letter` makes
them (original bytes untouched; an oversize message's or key's head, size and sha256).

A ``SensorFrame`` is one message: if any of its readings is invalid the whole frame is
rejected (its bytes go to the DLQ once, with the reason of the first bad reading), so the
DLQ always holds complete original records.

>>> import numpy as np
>>> rows = np.array([[1.0, 2.0], [np.nan, 2.0], [1.0, 99.0], [0.0, 0.0]])
>>> present = np.array([[True, True], [True, True], [True, True], [False, True]])
>>> need, low, high = np.array([True, True]), np.zeros(2), np.full(2, 9.0)
>>> _row_problems(rows, present, need, low, high)
['', 'non_finite', 'out_of_range', 'missing_channel']
>>> _, value, headers = dead_letter(None, b"x" * 5000, Rejected(0, "oversize", "5000 bytes"))
>>> len(value), dict(headers)["x-edgestream-original-size"]
(1024, b'5000')
"""

from __future__ import annotations

import hashlib
import operator
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgestream.core.exceptions import SerdeError
from edgestream.core.serde import DECODE_REASONS, AvroDeserializer
from edgestream.core.topology.edge import InputLimits, SensorTopic

#: Every reason a record can be rejected for (the ``x-edgestream-reason`` DLQ header).
REASONS = (
    *DECODE_REASONS,
    "oversize",
    "wrong_device_type",
    "bad_device_id",
    "missing_channel",
    "non_finite",
    "out_of_range",
    "future_timestamp",
    "too_old",
    "frame_shape",
)
#: Bytes of an oversize message kept on the DLQ: its head (the wire header, then the
#: record's first fields: device id, site, device type).
OVERSIZE_HEAD_BYTES = 1024


@dataclass(frozen=True)
class Rejected:
    """An invalid message: its index in the batch, the reason and a human-readable detail."""

    index: int
    reason: str
    detail: str


@dataclass
class Readings:
    """Valid readings of a batch, column-wise. ``message`` is each reading's message index."""

    channels: tuple[str, ...]
    message: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    device_id: list[str] = field(default_factory=list)
    site: list[str] = field(default_factory=list)
    device_type: list[str] = field(default_factory=list)
    ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    seq: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    values: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))

    def __len__(self) -> int:
        return len(self.ts)


class Validator:
    """Validates the records of one sensor topic against the topology's expectations."""

    def __init__(
        self, topic: SensorTopic, limits: InputLimits, deserializer: AvroDeserializer
    ) -> None:
        self.topic = topic
        self.limits = limits
        self.deserializer = deserializer
        self.channels = tuple(topic.channels)
        specs = [topic.channels[c] for c in self.channels]
        self._required = np.array([c.required for c in specs])
        self._low = np.array([-np.inf if c.min is None else c.min for c in specs], float)
        self._high = np.array([np.inf if c.max is None else c.max for c in specs], float)
        self._frames = topic.schema_ == "SensorFrame"
        self.counts: Counter[str] = Counter()

    def validate(self, values: list[bytes | None], now_ms: int) -> tuple[Readings, list[Rejected]]:
        """Split ``values`` into valid readings and rejected messages; counts every reason."""
        rejected: list[Rejected] = []
        decoded: list[tuple[int, dict[str, Any]]] = []
        limit = self.limits.max_payload_bytes
        sizes_ok = []
        for index, value in enumerate(values):
            if not value:
                rejected.append(Rejected(index, "empty", "no value bytes"))
            elif len(value) > limit:
                rejected.append(
                    Rejected(index, "oversize", f"{len(value)} bytes > limit {limit} bytes")
                )
            else:
                sizes_ok.append(index)
        results = self.deserializer.decode_many([values[i] for i in sizes_ok])  # type: ignore[misc]
        for index, result in zip(sizes_ok, results, strict=True):
            if isinstance(result, SerdeError):
                rejected.append(Rejected(index, result.reason, str(result)))
            elif result.get("device_type") != self.topic.device_type:
                detail = f"device_type {result.get('device_type')!r} on a topic of "
                detail += f"{self.topic.device_type!r}"
                rejected.append(Rejected(index, "wrong_device_type", detail))
            elif not self.limits.device_id.allows(result["device_id"]):
                rejected.append(Rejected(index, "bad_device_id", self._id_detail(result)))
            else:
                decoded.append((index, result))
        readings, more = self._columns(decoded, now_ms)
        rejected += more
        rejected.sort(key=lambda r: r.index)
        self.counts.update(r.reason for r in rejected)
        self.counts["valid_readings"] += len(readings)
        return readings, rejected

    # long: one pass over the decoded records into parallel column lists (the edge's hot path:
    # a per-record helper call or object costs more than the rest of the loop)
    def _columns(
        self, decoded: list[tuple[int, dict[str, Any]]], now_ms: int
    ) -> tuple[Readings, list[Rejected]]:
        n_ch = len(self.channels)
        all_channels, all_present = set(self.channels), [True] * n_ch
        pick = operator.itemgetter(*self.channels) if n_ch else None
        message: list[int] = []
        device_id: list[str] = []
        site: list[str] = []
        dtype: list[str] = []
        ts: list[int] = []
        seq: list[int] = []
        rows: list[Any] = []
        present: list[list[bool]] = []
        shape_bad: list[Rejected] = []
        for index, rec in decoded:
            if self._frames:
                times = rec["ts"]
                count = len(times)
                columns = rec["channels"]
                if count == 0 or any(len(v) != count for v in columns.values()):
                    lengths = {k: len(v) for k, v in columns.items()}
                    shape_bad.append(
                        Rejected(index, "frame_shape", f"{count} timestamps, channels {lengths}")
                    )
                    continue
                first = rec["first_seq"]
                nan_col = [np.nan] * count
                cols = [columns.get(c, nan_col) for c in self.channels]
                rows.extend(zip(*cols, strict=True)) if n_ch else rows.extend([[]] * count)
                present.extend([[c in columns for c in self.channels]] * count)
                ts.extend(times)
                seq.extend(range(first, first + count) if first >= 0 else [-1] * count)
                message.extend([index] * count)
                device_id.extend([rec["device_id"]] * count)
                site.extend([rec["site"]] * count)
                dtype.extend([rec["device_type"]] * count)
            else:
                chans = rec["channels"]
                if all_channels <= chans.keys():  # the usual reading: one C-level lookup
                    rows.append(pick(chans) if n_ch > 1 else (pick(chans),) if n_ch else ())
                    present.append(all_present)
                else:
                    rows.append([chans.get(c, np.nan) for c in self.channels])
                    present.append([c in chans for c in self.channels])
                ts.append(rec["ts"])
                seq.append(rec["seq"])
                message.append(index)
                device_id.append(rec["device_id"])
                site.append(rec["site"])
                dtype.append(rec["device_type"])
        values = np.array(rows, dtype=float).reshape(len(rows), n_ch)
        ts_arr = np.array(ts, dtype=np.int64)
        mask = np.array(present, dtype=bool).reshape(len(rows), n_ch)
        msg_arr = np.array(message, dtype=np.int64)
        bad_messages = self._bad_messages(values, mask, ts_arr, msg_arr, now_ms)
        seq_arr = np.array(seq, dtype=np.int64)
        if bad_messages:
            keep = ~np.isin(msg_arr, list(bad_messages))
            kept = np.flatnonzero(keep).tolist()
            msg_arr, ts_arr, seq_arr, values = (
                msg_arr[keep],
                ts_arr[keep],
                seq_arr[keep],
                values[keep],
            )
            device_id = [device_id[i] for i in kept]
            site = [site[i] for i in kept]
            dtype = [dtype[i] for i in kept]
        readings = Readings(
            channels=self.channels,
            message=msg_arr,
            device_id=device_id,
            site=site,
            device_type=dtype,
            ts=ts_arr,
            seq=seq_arr,
            values=values,
        )
        return readings, shape_bad + list(bad_messages.values())

    def _bad_messages(
        self,
        values: np.ndarray,
        mask: np.ndarray,
        ts_arr: np.ndarray,
        msg_arr: np.ndarray,
        now_ms: int,
    ) -> dict[int, Rejected]:
        """Message index -> its rejection, for the messages with a bad reading (the first
        problem found names the reason: channels, then event time)."""
        codes = _problem_codes(values, mask, self._required, self._low, self._high)
        future = ts_arr > now_ms + self.limits.max_clock_skew
        old = (
            ts_arr < now_ms - self.limits.max_age
            if self.limits.max_age is not None
            else np.zeros(len(ts_arr), bool)
        )
        bad_messages: dict[int, Rejected] = {}
        for row in np.flatnonzero(future | old | (codes != 0)):
            index = int(msg_arr[row])
            if index in bad_messages:
                continue
            reason = PROBLEMS[codes[row]] or ("future_timestamp" if future[row] else "too_old")
            detail = self._detail(reason, values[row], mask[row], int(ts_arr[row]), now_ms)
            bad_messages[index] = Rejected(index, reason, detail)
        return bad_messages

    def _id_detail(self, record: dict[str, Any]) -> str:
        device_id: str = record["device_id"]
        policy = self.limits.device_id
        shown = repr(device_id[:40]) + ("..." if len(device_id) > 40 else "")
        return (
            f"device id {shown} ({len(device_id)} characters) is not 1-{policy.max_length} "
            f"characters matching {policy.pattern}"
        )

    def _detail(
        self, reason: str, row: np.ndarray, present: np.ndarray, ts: int, now_ms: int
    ) -> str:
        names = self.channels
        if reason == "missing_channel":
            need = self._required & ~present
            gone = [n for n, miss in zip(names, need, strict=True) if miss]
            return f"required channel(s) missing: {', '.join(gone)}"
        if reason == "non_finite":
            bad = [
                f"{n}={v}"
                for n, v, p in zip(names, row, present, strict=True)
                if p and not np.isfinite(v)
            ]
            return f"non-finite value(s): {', '.join(bad)}"
        if reason == "out_of_range":
            bad = [
                f"{n}={v:g} not in [{lo:g}, {hi:g}]"
                for n, v, lo, hi in zip(names, row, self._low, self._high, strict=True)
                if v < lo or v > hi
            ]
            return "; ".join(bad)
        if reason == "future_timestamp":
            return f"event time {ts} is {ts - now_ms} ms ahead of the gateway clock"
        return f"event time {ts} is {now_ms - ts} ms older than the gateway clock allows"


#: A reading's problem per code of :func:`_problem_codes` ('' = none).
PROBLEMS = ("", "missing_channel", "non_finite", "out_of_range")


def _row_problems(
    values: np.ndarray, present: np.ndarray, required: np.ndarray, low: np.ndarray, high: np.ndarray
) -> list[str]:
    """The first problem of each reading ('' when valid), in order of precedence:
    a required channel absent, a present value NaN/inf, a value outside ``[low, high]``.
    """
    return [PROBLEMS[c] for c in _problem_codes(values, present, required, low, high)]


def _problem_codes(
    values: np.ndarray, present: np.ndarray, required: np.ndarray, low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """:func:`_row_problems` as indices into :data:`PROBLEMS` (one int per reading)."""
    if len(values) == 0:
        return np.zeros(0, np.int64)
    missing = (~present & required).any(axis=1)
    finite = np.isfinite(values)
    non_finite = (~finite & present).any(axis=1)
    with np.errstate(invalid="ignore"):
        outside = (((values < low) | (values > high)) & present & finite).any(axis=1)
    return np.select([missing, non_finite, outside], [1, 2, 3], 0)


def dead_letter(
    key: bytes | None, value: bytes | None, rejected: Rejected
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """The DLQ key, value and headers of a rejected message: ``x-edgestream-reason`` and
    ``x-edgestream-detail`` (its first 1000 characters), and its original bytes.

    An ``oversize`` message keeps only its first :data:`OVERSIZE_HEAD_BYTES`, with
    ``x-edgestream-original-size`` and ``x-edgestream-sha256`` (hex) of the whole; a key
    longer than that keeps its head too, with ``x-edgestream-original-key-size``. Whatever
    their sizes, the DLQ record fits what a Kafka topic takes (about 1 MB by default), so
    writing it never fails and it is never lost. Any other rejected message is at most the
    topology's ``max_payload_bytes`` (at most 900KB) and is kept whole.

    >>> key, value, headers = dead_letter(b"k", b"\\x01abc", Rejected(3, "bad_magic", "magic 1"))
    >>> key, value, [name for name, _ in headers]
    (b'k', b'\\x01abc', ['x-edgestream-reason', 'x-edgestream-detail'])
    """
    body = value or b""
    headers = [
        ("x-edgestream-reason", rejected.reason.encode()),
        ("x-edgestream-detail", rejected.detail[:1000].encode(errors="replace")),
    ]
    key, key_headers = bounded_key(key)
    headers += key_headers
    if rejected.reason != "oversize":
        return key, body, headers
    headers += [
        ("x-edgestream-original-size", str(len(body)).encode()),
        ("x-edgestream-sha256", hashlib.sha256(body).hexdigest().encode()),
    ]
    return key, body[:OVERSIZE_HEAD_BYTES], headers


def bounded_key(key: bytes | None) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """A key to copy onto a DLQ or ``.late`` record: as it is, or, when longer than
    :data:`OVERSIZE_HEAD_BYTES`, its head with ``x-edgestream-original-key-size`` (a valid
    reading may come with any key: copied whole, a 10 MB one would make the write fail).

    >>> bounded_key(b"pump-1")
    (b'pump-1', [])
    >>> key, headers = bounded_key(b"k" * 5000)
    >>> len(key), headers
    (1024, [('x-edgestream-original-key-size', b'5000')])
    """
    if key is None or len(key) <= OVERSIZE_HEAD_BYTES:
        return key, []
    return key[:OVERSIZE_HEAD_BYTES], [("x-edgestream-original-key-size", str(len(key)).encode())]
