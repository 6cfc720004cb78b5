"""Emission order: readings become messages at their event time, late ones after their delay.

The :class:`Scheduler` turns generated batches into the exact sequence of Kafka messages a
fleet would send, in *virtual* time (``emit_ts``, epoch ms): an on-time reading is sent at
its event time, a late reading at ``ts + delay_ms`` (so later readings overtake it). With
``frames=K`` a device sends its on-time readings K at a time as one SensorFrame (a frame
only holds consecutive sequence numbers: a late reading closes the device's open frame and
travels alone, later). Pacing against the wall clock is the producer's job.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np

from edgestream.sim.devices import Device
from edgestream.sim.labels import LateLabel
from edgestream.sim.signals import Batch


class Message(NamedTuple):
    """One record to send: a SensorReading or (``frame``) a SensorFrame value dict."""

    emit_ts: int  # virtual send time, epoch ms (non-decreasing along the stream)
    topic: str
    key: bytes
    value: dict[str, Any]
    readings: int
    frame: bool
    late: bool


class Scheduler:
    """Merge batches into emission order; count what was produced (see module docstring)."""

    def __init__(
        self,
        devices: list[Device],
        channels: dict[str, tuple[str, ...]],
        frames: int = 1,
        topic: str = "sensors.{device_type}",
    ) -> None:
        self.devices = devices
        self.frames = frames
        self.topic_of = [
            topic.format(device_type=d.device_type, site=d.site, device_id=d.device_id)
            for d in devices
        ]
        self._keys = [d.device_id.encode() for d in devices]
        self._names = [channels[d.device_type] for d in devices]
        n = len(devices)
        self.cut = [0] * n  # readings produced per device: seqs 0 .. cut-1
        self.last_ts = [0] * n  # event time of the device's last produced reading
        self.late: list[LateLabel] = []
        self.sent = [0] * n  # messages per device
        self.frame_messages = 0
        self._static = [(d.device_id, d.site, d.device_type) for d in devices]
        self.now_ts: int | None = None  # virtual time: event time of the latest reading
        self.stopped = False
        self._heap: list[tuple[int, int, int, int, int, list[float]]] = []
        self._open: dict[int, tuple[int, list[int], list[list[float]]]] = {}

    @property
    def pending(self) -> int:
        """Late readings generated but not sent yet."""
        return len(self._heap)

    @property
    def readings(self) -> int:
        return sum(self.cut)

    @property
    def messages(self) -> int:
        return sum(self.sent)

    @property
    def topics(self) -> dict[str, int]:
        """Messages per topic, sorted by topic."""
        counts: Counter[str] = Counter()
        for topic, n in zip(self.topic_of, self.sent, strict=True):
            if n:
                counts[topic] += n
        return dict(sorted(counts.items()))

    def run(
        self, batches: Iterable[Batch], stop: Callable[[], bool] | None = None
    ) -> Iterator[Message]:
        """Yield messages in emission order until the batches end or ``stop()`` is true."""
        heap, frames, cut, last_ts = self._heap, self.frames, self.cut, self.last_ts
        for batch in batches:
            for e, t, d, s, delay, row in zip(*_flatten(batch), strict=True):
                if stop is not None and stop():
                    self.stopped = True
                    break
                while heap and heap[0][0] <= e:
                    item = heapq.heappop(heap)
                    yield self._late_message(item, emit=item[0])
                self.now_ts = e
                cut[d] = s + 1
                last_ts[d] = t
                if delay:
                    heapq.heappush(heap, (e + delay, d, s, t, delay, row))
                    if frames > 1 and d in self._open:
                        yield self._close(d, e)
                elif frames > 1:
                    buf = self._open.get(d)
                    if buf is None:
                        buf = self._open[d] = (s, [], [])
                    buf[1].append(t)
                    buf[2].append(row)
                    if len(buf[1]) >= frames:
                        yield self._close(d, e)
                else:  # one SensorReading
                    yield self._reading(d, s, t, row, e, False)
            if self.stopped:
                break
        yield from self.flush()

    def flush(self) -> Iterator[Message]:
        """Send what is still open or pending, at the current virtual time."""
        now = self.now_ts if self.now_ts is not None else 0
        for d in sorted(self._open):
            yield self._close(d, now)
        while self._heap:
            yield self._late_message(heapq.heappop(self._heap), emit=now)

    # -- message construction --------------------------------------------------------------
    def _reading(self, d: int, s: int, t: int, row: list[float], emit: int, late: bool) -> Message:
        device_id, site, device_type = self._static[d]
        value = {
            "device_id": device_id,
            "site": site,
            "device_type": device_type,
            "ts": t,
            "seq": s,
            "channels": dict(zip(self._names[d], row, strict=True)),
            "tags": dict(self.devices[d].tags),
        }
        self.sent[d] += 1
        return Message(emit, self.topic_of[d], self._keys[d], value, 1, False, late)

    def _frame(
        self, d: int, first: int, ts: list[int], rows: list[list[float]], emit: int, late: bool
    ) -> Message:
        device_id, site, device_type = self._static[d]
        columns = zip(*rows, strict=True)
        value = {
            "device_id": device_id,
            "site": site,
            "device_type": device_type,
            "first_seq": first,
            "ts": ts,
            "channels": dict(zip(self._names[d], map(list, columns), strict=True)),
            "tags": dict(self.devices[d].tags),
        }
        self.sent[d] += 1
        self.frame_messages += 1
        return Message(emit, self.topic_of[d], self._keys[d], value, len(ts), True, late)

    def _close(self, d: int, emit: int) -> Message:
        first, ts, rows = self._open.pop(d)
        return self._frame(d, first, ts, rows, emit, late=False)

    def _late_message(
        self, item: tuple[int, int, int, int, int, list[float]], emit: int
    ) -> Message:
        _, d, s, t, delay, row = item
        self.late.append(LateLabel(self.devices[d].device_id, s, t, delay, emit))
        if self.frames > 1:
            return self._frame(d, s, [t], [row], emit, late=True)
        return self._reading(d, s, t, row, emit, late=True)


def _flatten(batch: Batch) -> tuple[list[Any], ...]:
    """A batch's readings as parallel lists (emit time, ts, device, seq, delay, values row) in
    on-time order: send time, then device; ties keep the batch's order."""
    emit, ts, dev, seq, delay, rows = [], [], [], [], [], []
    for g in batch.groups:
        n, steps = g.ts.shape
        ts.append(g.ts.ravel())
        emit.append((g.ts if g.emit_ts is None else g.emit_ts).ravel())
        dev.append(np.repeat(g.index, steps))
        if g.seq is not None:
            seq.append(g.seq.ravel())
        else:
            seq.append(np.tile(np.arange(batch.first_seq, batch.first_seq + steps), n))
        delay.append(g.delay_ms.ravel())
        rows.extend(g.values.reshape(n * steps, -1).tolist())
    all_emit, all_dev = np.concatenate(emit), np.concatenate(dev)
    order = np.lexsort((all_dev, all_emit))
    return (
        all_emit[order].tolist(),
        np.concatenate(ts)[order].tolist(),
        all_dev[order].tolist(),
        np.concatenate(seq)[order].tolist(),
        np.concatenate(delay)[order].tolist(),
        [rows[i] for i in order.tolist()],
    )
