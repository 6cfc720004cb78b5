"""Consumer-side dedup: replays dropped within the documented window, memory bounded."""

from __future__ import annotations

import doctest
import random

from edgestream.forward import dedup
from edgestream.forward.dedup import Deduplicator, record_id


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
    assert doctest.testmod(dedup).failed == 0
