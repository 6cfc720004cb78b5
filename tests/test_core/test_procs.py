"""Restart bookkeeping of supervised children (pure logic; the processes are in test_loop and
test_deploy)."""

from __future__ import annotations

import pytest

import edgestream.core.procs as procs
from edgestream.core.procs import COMPONENT_ENV, RESTARTS_ENV, Backoff, Restarts
from tests.support.doctests import run_doctests


def test_doctests() -> None:
    run_doctests(procs)


def test_backoff_doubles_to_the_cap_and_resets_after_a_long_run() -> None:
    b = Backoff(initial=1.0, cap=30.0, reset_after=60.0)
    assert [b.next_delay(uptime=0.5) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert b.next_delay(uptime=59.9) == 30  # not up long enough: still backing off
    assert b.next_delay(uptime=60.0) == 1  # it ran a minute: a fresh crash
    assert b.next_delay(uptime=1.0) == 2


def test_backoff_refuses_a_delay_that_makes_no_sense() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=0.0)
    with pytest.raises(ValueError, match="cap"):
        Backoff(initial=5.0, cap=1.0)


def test_restarts_wait_for_the_backoff_and_count_each_restart() -> None:
    r = Restarts(Backoff(initial=1.0, cap=4.0))
    assert not r.due(0.0) and r.env("edge-gw-1") == {RESTARTS_ENV: "0", COMPONENT_ENV: "edge-gw-1"}
    for count, (now, delay) in enumerate([(10.0, 1.0), (20.0, 2.0), (30.0, 4.0), (40.0, 4.0)]):
        assert r.exited(1, uptime=0.5, now=now) == delay
        assert not r.due(now + delay - 0.01) and r.due(now + delay)
        r.restarted()
        assert r.count == count + 1 and not r.due(now + 100) and r.last_exit == 1
    assert r.last_restart is not None and r.env("x")[RESTARTS_ENV] == "4"
