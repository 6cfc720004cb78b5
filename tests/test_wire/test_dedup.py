"""Consumer-side dedup: replays dropped within the documented window, memory bounded."""

from __future__ import annotations

import random
import time

import pytest
from confluent_kafka import Producer
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edgestream.core.broker import ensure_topics
from edgestream.core.serde import AvroSerializer, subject_for
from edgestream.core.stack import StackStatus
from edgestream.wire import dedup
from edgestream.wire.dedup import Deduplicator, DedupReader
from edgestream.wire.ids import record_id
from tests.support.doctests import run_doctests
from tests.support.records import alert


def test_replays_are_dropped_across_gateways_and_out_of_order() -> None:
    d = Deduplicator(window=1000)
    rng = random.Random(3)
    sent = [(gw, seq) for gw in ("a", "b") for seq in range(1, 501)]
    stream = sent + rng.sample(sent, 300)  # at-least-once: some arrive twice
    rng.shuffle(stream)
    accepted = [x for x in stream if d.accept(x[0], x[1], f"{x[0]}|{x[1]}")]
    assert sorted(accepted) == sorted(sent)
    assert d.stats["duplicates"] == 300


def test_a_known_id_under_a_new_seq_is_a_replay() -> None:
    d = Deduplicator()
    assert d.accept("gw", 1, "gw|p1|5|0")
    assert not d.accept("gw", 9, "gw|p1|5|0"), "edge replay accepted again by the outbox"
    assert d.accept_record({"gateway_id": "gw", "gateway_seq": 2, "alert_id": "x"})
    assert not d.accept_record({"gateway_id": "gw", "gateway_seq": 2, "alert_id": "x"})


def test_older_than_the_window_is_delivered_not_lost() -> None:
    d = Deduplicator(window=16, id_memory=0)
    assert d.accept("gw", 100, None)
    assert d.accept("gw", 50, None), "cannot tell: at least once beats losing it"
    assert d.stats["unverified"] == 1
    assert d.accept("gw", 90, None) and not d.accept("gw", 90, None)


def test_memory_is_bounded() -> None:
    d = Deduplicator(window=1 << 12, id_memory=100)
    for seq in range(1, 20_000):
        d.accept("gw", seq, f"id-{seq}")
    assert len(d._ids) == 100
    assert len(d._seqs["gw"].bits) == (1 << 12) // 8
    assert not d.accept("gw", 19_999 - 10, "again"), "recent seqs still recognised"


def test_record_id_of_each_kind() -> None:
    assert record_id({"report_id": "gw|report|1"}) == "gw|report|1"
    assert record_id({"other": 1}) is None


def test_docstring_examples_run() -> None:
    run_doctests(dedup)


@pytest.mark.integration
def test_reader_skips_a_record_that_does_not_decode_and_goes_on(stack: StackStatus) -> None:
    ends = stack.endpoints()
    bootstrap, registry = str(ends["cloud"]), str(ends["registry"])
    topic = "dedup.undecodable"
    ensure_topics(bootstrap, {topic: 1})
    ser = AvroSerializer(registry, "AnomalyAlert", subject_for(topic))
    producer = Producer({"bootstrap.servers": bootstrap})
    good = [{**alert("p1", ts), "gateway_seq": ts} for ts in (1, 2)]
    header = ser(good[0])[:5]  # a known schema id, a body that is not an alert
    for value in (ser(good[0]), header + b"\xff\xff\xff", ser(good[1])):
        producer.produce(topic, value, b"p1")
    assert producer.flush(10) == 0
    reader = DedupReader(bootstrap, [topic], registry)
    got, deadline = [], time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        got += reader.poll(1.0)
    reader.close()
    assert [d.record["ts"] for d in got] == [1, 2]
    assert reader.skipped == [(topic, 0, 1, "decode")]


_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["gw-a", "gw-b", None]),
        st.one_of(st.none(), st.integers(0, 20)),
        st.one_of(st.none(), st.sampled_from([f"id{i}" for i in range(12)])),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(events=_EVENTS)
@example(events=[("gw-a", 1, "id1"), ("gw-a", 1, "id1"), ("gw-a", 2, "id1"), ("gw-b", 1, "id1")])
@example(events=[(None, None, "id3"), ("gw-a", 4, "id3"), ("gw-a", 4, None), (None, 4, None)])
def test_deduplicator_equals_a_brute_force_model(events) -> None:
    """Within its window and id memory, the Deduplicator accepts exactly what a model of two
    plain sets accepts: a record is new when its (gateway, seq) was never seen (if it has
    both) and its id was never seen (if it has one); a record with neither is always new."""
    dedup = Deduplicator(window=1 << 10, id_memory=1 << 10)
    seen_seqs: set[tuple[str, int]] = set()
    seen_ids: set[str] = set()
    for gateway, seq, rid in events:
        has_seq = gateway is not None and seq is not None
        want = (not has_seq or (gateway, seq) not in seen_seqs) and (
            rid is None or rid not in seen_ids
        )
        if has_seq:
            seen_seqs.add((gateway, seq))
        if rid is not None:
            seen_ids.add(rid)
        assert dedup.accept(gateway, seq, rid) == want, (gateway, seq, rid)
    assert dedup.stats["accepted"] + dedup.stats["duplicates"] == len(events)
