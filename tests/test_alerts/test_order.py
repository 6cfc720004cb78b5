"""The order alerts are handed out in, on a real broker: the backlog by event time (``ts``),
not by arrival (``emitted_at``); live alerts as they arrive; no commit past an alert of a
sorted backlog that was not handed out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from edgestream.alerts import subscribe
from edgestream.core.stack import StackStatus
from tests.support.alerts import Cloud
from tests.support.cli import cli_output
from tests.support.records import alert

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000
# (device, ts offset in s), in the order the gateways emitted them: emitted_at increases,
# ts does not. dev-0's alerts share a partition (one key): a gateway back from an outage
# sends its older alerts after newer ones; the other devices are on other partitions.
EMITTED = [("dev-0", 50), ("dev-1", 40), ("dev-0", 10), ("dev-2", 45), ("dev-0", 30),
           ("dev-3", 5), ("dev-1", 20), ("dev-0", 60)]  # fmt: skip


@pytest.fixture
def cloud(stack: StackStatus, request: pytest.FixtureRequest) -> Iterator[Cloud]:
    cloud = Cloud(stack, f"order.{request.node.name[:40]}")
    yield cloud
    cloud.producer.flush(10)
    del cloud.producer


def _send_out_of_order(cloud: Cloud) -> list[dict[str, Any]]:
    records = []
    for i, (device, offset_s) in enumerate(EMITTED):
        ts = T0 + offset_s * 1000
        records.append({**alert(device, ts, "gw-1"), "emitted_at": T0 + 100_000 + i,
                        "gateway_seq": i + 1})  # fmt: skip
    cloud.send(records)
    return records


def _by_ts(records: list[dict[str, Any]]) -> list[str]:
    return [r["alert_id"] for r in sorted(records, key=lambda r: r["ts"])]


def test_snapshot_and_cli_print_the_backlog_oldest_event_time_first(
    cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = _send_out_of_order(cloud)
    assert [r["alert_id"] for r in sent] != _by_ts(sent), "emitted out of event-time order"
    ends = {"bootstrap": cloud.bootstrap, "registry": cloud.registry, "topic": cloud.topic}
    with subscribe(**ends, group=None, follow=False) as snapshot:
        assert [a.alert_id for a in snapshot] == _by_ts(sent)
    code, lines, err = cli_output(capsys, "alerts", "--format", "json", "--group", "order-cli",
                            *(f"--{k}={v}" for k, v in ends.items()))  # fmt: skip
    assert code == 0, err
    assert [json.loads(line)["alert_id"] for line in lines] == _by_ts(sent)


def test_follow_sorts_the_backlog_then_hands_out_live_alerts_as_they_arrive(
    cloud: Cloud,
) -> None:
    sent = _send_out_of_order(cloud)
    ends = {"bootstrap": cloud.bootstrap, "registry": cloud.registry, "topic": cloud.topic}
    with subscribe(**ends, group="order-follow") as live:
        backlog = [live.next_alert(60.0) for _ in sent]
        assert [a.alert_id for a in backlog if a is not None] == _by_ts(sent)
        late = {**alert("dev-3", T0, "gw-1", number=0), "gateway_seq": 99}  # oldest ts of all
        cloud.send([late])
        got = live.next_alert(60.0)
        assert got is not None and got.alert_id == late["alert_id"], "live: as it arrives"


def test_a_subscriber_closed_inside_a_sorted_backlog_commits_nothing_it_did_not_print(
    cloud: Cloud,
) -> None:
    sent = _send_out_of_order(cloud)
    ends = {"bootstrap": cloud.bootstrap, "registry": cloud.registry, "topic": cloud.topic}
    with subscribe(**ends, group="order-resume") as first:
        printed = [first.next_alert(60.0) for _ in range(3)]
    assert [a.alert_id for a in printed if a is not None] == _by_ts(sent)[:3]
    with subscribe(**ends, group="order-resume", follow=False) as again:
        rest = [a.alert_id for a in again]
    assert set(_by_ts(sent)[3:]) <= set(rest), "nothing lost by the close"
    assert rest == sorted(rest, key=_by_ts(sent).index), "and the rest still by event time"
