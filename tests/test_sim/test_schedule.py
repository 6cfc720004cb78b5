"""Emission order: late readings, out-of-order positions, frames, early stop."""

from __future__ import annotations

import itertools

from edgestream.sim import Simulator
from edgestream.sim.schedule import Message
from tests.support.sim import config, run


def _readings(messages: list[Message]) -> dict[tuple[str, int], tuple[int, dict[str, float]]]:
    """(device_id, seq) -> (ts, channels), from reading or frame messages."""
    found: dict[tuple[str, int], tuple[int, dict[str, float]]] = {}
    for m in messages:
        v = m.value
        if m.frame:
            for i, ts in enumerate(v["ts"]):
                key = (v["device_id"], v["first_seq"] + i)
                assert key not in found
                found[key] = (ts, {name: col[i] for name, col in v["channels"].items()})
        else:
            key = (v["device_id"], v["seq"])
            assert key not in found
            found[key] = (v["ts"], v["channels"])
    return found


def test_late_fraction_delays_and_labels() -> None:
    cfg = config(devices=20, rate=5.0, duration=600.0, late_fraction=0.1, late_beyond_share=0.3)
    messages, sim = run(cfg)
    labels = sim.labels()
    late = [m for m in messages if m.late]
    assert len(late) == len(labels.late) == labels.run.late_readings
    assert abs(len(late) / labels.run.readings - 0.1) < 0.01
    beyond = [x for x in labels.late if x.delay_ms >= 30_000]
    within = [x for x in labels.late if x.delay_ms <= 5_000]
    assert len(beyond) + len(within) == len(labels.late)
    assert abs(len(beyond) / len(labels.late) - 0.3) < 0.03
    assert all(1_000 <= x.delay_ms <= 5_000 or 30_000 <= x.delay_ms <= 120_000 for x in labels.late)
    # each late message sits where its delay puts it; the label says where that is
    for m, label in zip(late, labels.late, strict=True):
        assert (m.value["device_id"], m.value["seq"], m.value["ts"]) == (
            label.device_id,
            label.seq,
            label.ts,
        )
        assert m.emit_ts == label.emit_ts <= label.ts + label.delay_ms
    flushed = [x for x in labels.late if x.emit_ts < x.ts + x.delay_ms]
    assert all(x.emit_ts == labels.run.end_ts for x in flushed)


def test_stream_is_in_emission_order_and_late_readings_are_out_of_order() -> None:
    cfg = config(devices=10, rate=5.0, duration=300.0, late_fraction=0.05)
    messages, sim = run(cfg)
    emit = [m.emit_ts for m in messages]
    assert emit == sorted(emit)
    last = {d: n - 1 for d, n in sim.labels().run.readings_per_device.items()}
    newest: dict[str, int] = {}
    for m in messages:
        device, seq = m.value["device_id"], m.value["seq"]
        if m.late and seq < last[device]:
            assert seq < newest[device]  # a later reading of the device went first
        else:
            assert seq > newest.get(device, -1)  # on-time readings keep device order
        newest[device] = max(newest.get(device, -1), seq)
        if not m.late:
            assert m.emit_ts == m.value["ts"]


def test_frames_reassemble_to_the_same_readings() -> None:
    base = config(devices=7, rate=3.0, duration=200.0, late_fraction=0.05, anomaly_rate=0.02)
    singles, sim1 = run(base)
    framed, sim2 = run(base.with_(frames=10))
    assert _readings(framed) == _readings(singles)
    assert all(m.frame for m in framed) and not any(m.frame for m in singles)
    for m in framed:
        n = len(m.value["ts"])
        assert 1 <= n <= 10 and all(len(col) == n for col in m.value["channels"].values())
        assert m.value["ts"] == sorted(m.value["ts"])
        if m.late:
            assert n == 1
    assert sum(m.readings for m in framed) == sim2.labels().run.readings
    assert sim2.labels().run.frames == len(framed) < len(singles) / 5
    l1, l2 = sim1.labels(), sim2.labels()
    assert l1.anomalies == l2.anomalies and l1.late_ids() == l2.late_ids()


def test_stop_ends_early_and_labels_cover_exactly_what_was_sent() -> None:
    cfg = config(devices=5, rate=5.0, duration=600.0, late_fraction=0.1, anomaly_rate=0.05)
    sim = Simulator(cfg)
    count = itertools.count()
    messages = list(sim.messages(stop=lambda: next(count) >= 4000))
    labels = sim.labels()
    assert labels.run.stopped and labels.run.readings < cfg.readings_expected
    sent = set(_readings(messages))
    assert sent == labels.reading_ids()
    assert labels.anomalous_ids() <= sent and labels.late_ids() <= sent
    ends = {d: n - 1 for d, n in labels.run.readings_per_device.items()}
    assert all(a.last_seq <= ends[a.device_id] for a in labels.anomalies)


def test_topic_template_and_keys() -> None:
    messages, sim = run(config(topic="plant.{site}.{device_type}", sites=2))
    assert {m.topic for m in messages} == set(sim.topics)
    for m in messages:
        assert m.topic == f"plant.{m.value['site']}.{m.value['device_type']}"
        assert m.key == m.value["device_id"].encode()
    assert sim.labels().run.topics == {t: sum(m.topic == t for m in messages) for t in sim.topics}
