"""What ``edgestream bench e2e`` reports: the result of one run from what it measured
(bandwidth, the drain after the outage, reading -> cloud alert latency), and its table."""

from __future__ import annotations

from collections import Counter
from typing import Any

from edgestream.bench.common import machine_info
from edgestream.bench.e2e_parts import CloudWatcher, SensorSender, percentiles
from edgestream.core.serde import AvroDeserializer
from edgestream.wire.ids import record_id
from edgestream.wire.topics import FLEET

KIND_OF_TOPIC = {FLEET[kind]: kind for kind in ("alerts", "summaries", "reports", "samples")}
CLOUD_TOPICS = list(KIND_OF_TOPIC)
ID_FIELDS = ("alert_id", "incident_id", "summary_id")
GOALS = {"cloud_to_raw_ratio": 0.01, "drain_rate_vs_live": 10.0, "p99_alert_ms": 300.0}
#: Alerts of readings sent in the live phase's last seconds are left out of the latency
#: measure (the outage that follows may catch them; see :mod:`edgestream.bench.e2e`).
LATENCY_GUARD_S = 5.0


def e2e_result(
    params: dict[str, Any],
    t: dict[str, float],
    sender: SensorSender,
    watcher: CloudWatcher,
    stats: Any,
    backlog: Any,
    edge_out: dict[str, list[Any]],
    registry: str,
    cpu: dict[str, float | None],
    rss: dict[str, float | None],
) -> dict[str, Any]:
    """The result of one run from what it measured (``t``: the phases' wall-clock ms)."""
    decode = AvroDeserializer(registry)
    edge_records = [(decode(m.value()), m.timestamp()[1]) for ms in edge_out.values() for m in ms]
    edge_bytes = sum(len(m.value()) + len(m.key() or b"") for ms in edge_out.values() for m in ms)
    drain, drain_vs_live = _drain(t, watcher, edge_records)
    lat, parts = _latency(t, sender, watcher, edge_records)
    ratio = stats.cloud_bytes / stats.sensor_bytes if stats.sensor_bytes else None
    p99 = lat.get("p99")
    return {
        "bench": "e2e",
        "params": params,
        "machine": machine_info(),
        "cloud_bytes": stats.cloud_bytes,
        "raw_sensor_bytes": stats.sensor_bytes,
        "cloud_to_raw_ratio": None if ratio is None else round(ratio, 5),
        "drain_rate_vs_live": drain_vs_live,
        "p99_reading_to_cloud_alert_ms": p99,
        "goals": {
            "cloud_to_raw_ratio<=0.01": ratio is not None and ratio <= GOALS["cloud_to_raw_ratio"],
            "drain_rate_vs_live>=10": bool(drain_vs_live and drain_vs_live >= 10),
            "p99_alert_ms<=300": p99 is not None and p99 <= GOALS["p99_alert_ms"],
        },
        "bandwidth": _bandwidth(sender, watcher, stats, edge_bytes, len(edge_records)),
        "drain": {**drain, "outbox_at_restart": backlog.as_dict()},
        "latency_ms": {**lat, "parts_p50": {k: percentiles(v).get("p50") for k, v in parts.items()},
                       "parts_p99": {k: percentiles(v).get("p99") for k, v in parts.items()}},
        "dedup": dict(watcher.dedup.stats),
        "processes": {"cpu_s": cpu, "peak_rss_mb": rss},
    }  # fmt: skip


def _drain(
    t: dict[str, float], watcher: CloudWatcher, edge_records: list[tuple[dict[str, Any], int]]
) -> tuple[dict[str, Any], float | None]:
    """How the outage's backlog reached the cloud, and its drain rate against the live rate."""
    first = {record_id(d.record): d for d in watcher.delivered}
    live_s = (t["live1"] - t["live0"]) / 1000
    live = [r for r, ts in edge_records if t["live0"] <= ts < t["live1"]]
    outage = [record_id(r) for r, ts in edge_records if t["down"] <= ts <= t["up"]]
    arrived = [first[i] for i in outage if i in first]
    live_rate = len(live) / live_s
    drain: dict[str, Any] = {"backlog_records": len(outage), "arrived": len(arrived)}
    if arrived:
        drain_s = max((t["drained"] - min(d.timestamp_ms for d in arrived)) / 1000, 0.001)
        catch_up_s = (max(d.received_ms for d in arrived) - t["up"]) / 1000
        drain.update(
            drain_s=round(drain_s, 3), catch_up_s=round(catch_up_s, 3),
            drain_rate=round(len(arrived) / drain_s, 1),
            catch_up_rate_vs_live=round(len(arrived) / catch_up_s / live_rate, 1)
            if live_rate and catch_up_s > 0 else None,
        )  # fmt: skip
    drain["live_rate"] = round(live_rate, 2)
    drain_vs_live = round(drain["drain_rate"] / live_rate, 1) if arrived and live_rate else None
    return drain, drain_vs_live


def _latency(
    t: dict[str, float],
    sender: SensorSender,
    watcher: CloudWatcher,
    edge_records: list[tuple[dict[str, Any], int]],
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Reading -> cloud alert latencies of the live phase, and the parts they are made of."""
    edge_ts = {record_id(r): ts for r, ts in edge_records}
    latency: list[float] = []
    parts: dict[str, list[float]] = {
        "gateway": [], "gateway_detect": [], "gateway_produce": [], "forwarder": [],
        "cloud_read": [],
    }  # fmt: skip
    halves: dict[bool, list[float]] = {False: [], True: []}  # sent in the live phase's 2nd half
    guarded = 0
    for d in watcher.delivered:
        rec = d.record
        if d.topic != FLEET["alerts"] or rec.get("status") not in ("open", "update"):
            continue
        phase = latency_phase(sender.sent_at.get((rec["device_id"], int(rec["ts"]))), t)
        guarded += phase == "guard"
        if phase != "measured":
            continue
        sent = sender.sent_at[(rec["device_id"], int(rec["ts"]))]
        latency.append(d.received_ms - sent)
        halves[sent >= (t["live0"] + t["live1"]) / 2].append(d.received_ms - sent)
        on_edge = edge_ts.get(rec["alert_id"])
        if on_edge is not None:
            parts["gateway"].append(on_edge - sent)
            emitted = rec.get("emitted_at")  # the worker's clock when it handed the alert over
            if emitted is not None:
                parts["gateway_detect"].append(emitted - sent)
                parts["gateway_produce"].append(on_edge - emitted)
            parts["forwarder"].append(d.timestamp_ms - on_edge)
            parts["cloud_read"].append(d.received_ms - d.timestamp_ms)
    lat = {**percentiles(latency), "guard_s": LATENCY_GUARD_S, "excluded_in_guard": guarded,
           "live_first_half": percentiles(halves[False]),
           "live_second_half": percentiles(halves[True])}  # fmt: skip
    return lat, parts


def _bandwidth(
    sender: SensorSender, watcher: CloudWatcher, stats: Any, edge_bytes: int, edge_records: int
) -> dict[str, Any]:
    """Bytes sent, on the gateway's outputs and on the wire to the cloud, by kind."""
    return {
        "raw_sensor_bytes_sent": sender.bytes,
        "readings": sender.readings,
        "edge_output_record_bytes": edge_bytes,
        "edge_output_records": edge_records,
        "cloud_wire_bytes": stats.cloud_bytes,
        "cloud_bytes_per_record": round(stats.cloud_bytes / max(stats.delivered, 1), 1),
        "delivered": stats.delivered,
        "cloud_bytes_by_kind": _by_kind(stats),
        "cloud_to_raw_by_kind": {
            kind: round(size / stats.sensor_bytes, 6) if stats.sensor_bytes else None
            for kind, size in _by_kind(stats).items()
        },
        "delivered_by_kind": {KIND_OF_TOPIC[t]: watcher.count(t) for t in CLOUD_TOPICS},
        "alerts_by_status": dict(
            Counter(d.record.get("status") for d in watcher.delivered if d.topic == FLEET["alerts"])
        ),
    }


def curated_bytes(topics: dict[str, list[Any]], registry: str) -> dict[str, dict[str, int]]:
    """Per curated topic: records, key + value bytes, and the bytes of their ids (UTF-8)."""
    decode = AvroDeserializer(registry)
    out = {}
    for topic, messages in topics.items():
        ids = 0
        for m in messages:
            record = decode(m.value())
            ids += sum(len(str(record[f]).encode()) for f in ID_FIELDS if record.get(f))
        size = sum(len(m.value()) + len(m.key() or b"") for m in messages)
        out[topic] = {"records": len(messages), "record_bytes": size, "id_bytes": ids}
    return out


def latency_phase(sent_ms: float | None, t: dict[str, float]) -> str | None:
    """Whether the alert of a reading sent at ``sent_ms`` (wall clock, ms) counts in the
    latency measure: ``"measured"`` in the live phase up to ``LATENCY_GUARD_S`` before its
    end, ``"guard"`` in that last band (the outage may catch it), else None. By send time.

    >>> t = {"live0": 0.0, "live1": 90_000.0}
    >>> [latency_phase(s, t) for s in (None, -1, 0, 84_999, 85_000, 89_999, 90_000)]
    [None, None, 'measured', 'measured', 'guard', 'guard', None]
    """
    if sent_ms is None or not (t["live0"] <= sent_ms < t["live1"]):
        return None
    return "guard" if sent_ms >= t["live1"] - LATENCY_GUARD_S * 1000 else "measured"


def _by_kind(stats: Any) -> dict[str, int]:
    names = {"alert": "alerts", "summary": "summaries", "report": "reports", "sample": "samples"}
    return {names.get(k, k): int(v) for k, v in sorted(stats.cloud_bytes_by_kind.items())}


def e2e_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows of the result table (measure, value, note)."""
    goals = result["goals"]
    lat, drain, bw = result["latency_ms"], result["drain"], result["bandwidth"]

    def ok(key: str) -> str:
        return "goal met" if goals[key] else "goal NOT met"

    return [
        ("bandwidth", "", ""),
        ("raw sensor bytes", f"{result['raw_sensor_bytes']:,}", f"{bw['readings']:,} readings"),
        ("cloud bytes (wire)", f"{result['cloud_bytes']:,}", f"{bw['delivered']:,} records"),
        ("cloud / raw", f"{(result['cloud_to_raw_ratio'] or 0):.3%}",
         ok("cloud_to_raw_ratio<=0.01")),
        *[(f"  {kind}", f"{size:,}", f"{(bw['cloud_to_raw_by_kind'][kind] or 0):.3%} of raw; "
           f"{bw['delivered_by_kind'].get(kind, '-')} records")
          for kind, size in bw.get("cloud_bytes_by_kind", {}).items()],
        *[(f"  {topic} holds", f"{c['record_bytes']:,}", f"{c['records']:,} records, "
           f"{c['id_bytes']:,} B of ids") for topic, c in bw.get("curated_topics", {}).items()],
        ("outage", "", ""),
        ("backlog records", f"{drain['backlog_records']:,}", f"live {drain['live_rate']}/s"),
        ("drain s / catch-up s", f"{drain.get('drain_s')} / {drain.get('catch_up_s')}", ""),
        ("drain rate vs live", f"{result['drain_rate_vs_live']}x", ok("drain_rate_vs_live>=10")),
        ("latency (reading -> cloud alert)", "", ""),
        ("p50 / p95 ms", f"{lat.get('p50')} / {lat.get('p95')}",
         f"{lat.get('samples', 0)} alerts; {lat.get('excluded_in_guard', 0)} sent in the "
         f"last {lat.get('guard_s', 0):g} s before the outage left out"),
        ("p99 ms", f"{lat.get('p99')}", ok("p99_alert_ms<=300")),
        ("p99 gateway / forwarder / read",
         " / ".join(str(lat["parts_p99"][k]) for k in ("gateway", "forwarder", "cloud_read")),
         "ms"),
        ("p99 gateway: detect / produce",
         " / ".join(str(lat["parts_p99"][k]) for k in ("gateway_detect", "gateway_produce")),
         "ms"),
        *_halves_rows(lat),
    ]  # fmt: skip


def _halves_rows(lat: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Latency by half of the live phase, beside the edge broker's tail fetch (runs saved
    before these were measured have neither)."""
    first, second = lat.get("live_first_half"), lat.get("live_second_half")
    probe = lat.get("edge_broker_tail_fetch_ms")
    if not (first and second and probe):
        return []
    return [
        ("p50 / p99 ms, live 1st half", f"{first.get('p50')} / {first.get('p99')}",
         f"{first.get('samples', 0)} alerts"),
        ("p50 / p99 ms, live 2nd half", f"{second.get('p50')} / {second.get('p99')}",
         f"{second.get('samples', 0)} alerts"),
        ("edge broker fetch at the tail", f"{probe.get('live_start')} -> {probe.get('live_end')}",
         "ms, live start -> end (must not grow with the data the broker holds)"),
    ]  # fmt: skip
