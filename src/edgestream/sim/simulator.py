"""A simulator run without Kafka: readings, messages in emission order, and their labels.

>>> sim = Simulator(SimConfig(devices=3, rate=2.0, duration=30, seed=5, start_time=0,
...                           anomaly_rate=0.05, late_fraction=0.1, labels=None))
>>> messages = list(sim.messages())
>>> sum(m.readings for m in messages)
180
>>> labels = sim.labels()
>>> labels.run.readings, labels.run.late_readings == sum(m.late for m in messages)
(180, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from edgestream.sim.config import SimConfig, now_ms
from edgestream.sim.devices import Device
from edgestream.sim.exceptions import SimError
from edgestream.sim.labels import AnomalyLabel, Labels, RunLabel
from edgestream.sim.replay import ReplaySource
from edgestream.sim.schedule import Message, Scheduler
from edgestream.sim.signals import Batch, SignalGenerator


class Simulator:
    """One run of the simulator: synthetic fleet or CSV replay, as configured.

    ``batches()`` gives the raw numpy blocks; ``messages()`` the records in emission order
    (use one or the other, once); ``labels()`` the ground truth of what was emitted.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        if config.replay is not None:
            self.source: SignalGenerator | ReplaySource = ReplaySource(config)
            self.start_ms = self.source.start_ms
            self.devices: list[Device] = self.source.devices
            channels = self.source.channels
            self.readings_expected: int | None = self.source.readings_expected
        else:
            start = config.start_time if config.start_time is not None else now_ms()
            self.source = SignalGenerator(config, start)
            self.start_ms = self.source.start_ms
            self.devices = self.source.fleet.devices
            channels = {g.dtype.name: g.dtype.channel_names for g in self.source.fleet.groups}
            self.readings_expected = config.readings_expected
        self.scheduler = Scheduler(self.devices, channels, config.frames, config.topic)
        self._started = False

    @property
    def topics(self) -> list[str]:
        """Every topic this run writes to (sorted)."""
        return sorted(set(self.scheduler.topic_of))

    def batches(self) -> Iterator[Batch]:
        """The generated blocks of readings (numpy), not yet in emission order."""
        self._start()
        return self.source.batches()

    def messages(self, stop: Callable[[], bool] | None = None) -> Iterator[Message]:
        """Messages in emission order; stops early (flushing pending ones) when ``stop()``."""
        self._start()
        return self.scheduler.run(self.source.batches(), stop)

    def _start(self) -> None:
        if self._started:
            raise SimError("a Simulator runs once: create a new one for another run")
        self._started = True

    def labels(self) -> Labels:
        """Ground truth of what was emitted so far (complete once ``messages()`` is exhausted)."""
        sched, cfg = self.scheduler, self.config
        index = {d.device_id: d.index for d in self.devices}
        anomalies = []
        for ep in self.source.episodes:
            cut = sched.cut[ep.device]
            if ep.first_seq >= cut or ep.start_ts is None:
                continue
            last, end_ts = ep.last_seq, ep.end_ts
            if last >= cut or end_ts is None:
                last, end_ts = cut - 1, sched.last_ts[ep.device]
            device_id = self.devices[ep.device].device_id
            anomalies.append(
                AnomalyLabel(
                    device_id, ep.kind, ep.start_ts, end_ts, ep.first_seq, last, ep.channels
                )
            )
        anomalies.sort(key=lambda a: (a.start_ts, index[a.device_id], a.first_seq))
        drifts = []
        for drift in self.source.drifts:
            reached = [
                sched.last_ts[d.index] >= drift.start_ts
                for d in self.devices
                if d.device_type == drift.device_type and sched.cut[d.index]
            ]
            if any(reached):
                drifts.append(replace(drift, shift=dict(drift.shift)))
        params = cfg.as_params()
        params["start_time"] = self.start_ms
        run = RunLabel(
            seed=cfg.seed,
            start_ts=self.start_ms,
            end_ts=max(sched.last_ts) if sched.readings else self.start_ms,
            readings=sched.readings,
            readings_per_device={d.device_id: sched.cut[d.index] for d in self.devices},
            anomalous_readings=sum(a.readings for a in anomalies),
            late_readings=len(sched.late),
            messages=sched.messages,
            frames=sched.frame_messages,
            topics=sched.topics,
            stopped=sched.stopped,
            params=params,
        )
        return Labels(anomalies=anomalies, drifts=drifts, late=list(sched.late), run=run)
