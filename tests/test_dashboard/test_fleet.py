"""The dashboard's view of the fleet, from synthetic cloud records (no broker)."""

from __future__ import annotations

import pytest

from edgestream.alerts.filters import AlertFilter
from edgestream.dashboard import DashboardConfig, DashboardError, config, fleet, run, series
from edgestream.dashboard.fleet import FleetView
from tests.support.dashboard_records import T0, fleet_records
from tests.support.doctests import run_doctests


@pytest.mark.parametrize("module", [config, fleet, series, run])
def test_docstring_examples(module: object) -> None:
    run_doctests(module)


def _view() -> FleetView:
    view = FleetView(stale_after_s=60)
    for kind, record in fleet_records():
        view.add(kind, record, now_ms=T0 + 60_000)
    return view


def test_gateways_show_health_models_and_rollout() -> None:
    rows = {r["gateway"]: r for r in _view().gateways(now_ms=T0 + 90_000)}
    gw1, gw2 = rows["gw-1"], rows["gw-2"]
    assert gw1["status"] == gw2["status"] == "up"
    assert gw1["outbox_depth"] == 12 and gw1["outbox_age_s"] == 1.5 and gw1["dropped"] == 3
    assert gw1["report_age_s"] == 70.0
    assert gw1["lag_s"] == 60.1  # newest event: the last summary's last_ts (T0 + 29.9 s)
    assert gw1["models"] == {"pump": "v2"} and gw2["models"] == {"pump": "v1"}
    assert gw1["rollout"]["pump"]["event"] == "promoted"
    assert gw2["outbox_depth"] is None and gw2["sites"] == ["site-1", "site-3"]
    later = {r["gateway"]: r["status"] for r in _view().gateways(now_ms=T0 + 200_000)}
    assert later == {"gw-1": "down", "gw-2": "down"}


def test_alerts_newest_first_and_filtered() -> None:
    view = _view()
    assert [a["device_id"] for a in view.alerts()] == ["gw-2-pump-0", "gw-1-pump-0"]
    only = view.alerts(AlertFilter.build(min_severity="warning"))
    assert [a["severity"] for a in only] == ["critical"]
    assert [a["site"] for a in view.alerts(AlertFilter.build(site="site-3"))] == ["site-3"]
    assert "readings" not in only[0] and only[0]["received_ms"] == T0 + 60_000


def test_device_readings_scores_and_alerts() -> None:
    dev = _view().device("gw-1-pump-0")
    assert dev is not None and dev["gateway"] == "gw-1" and dev["site"] == "site-1"
    assert len(dev["ts"]) == 30 and sorted(dev["channels"]) == ["bearing_temp", "pressure"]
    assert dev["scores"] == [[T0 + 10_000, 0.2], [T0 + 20_000, 0.3], [T0 + 30_000, 0.4]]
    assert [a["severity"] for a in dev["alerts"]] == ["critical"]
    assert _view().device("nope") is None


def test_stats_rates_worst_and_timeline() -> None:
    view = _view()
    site = view.stats.rates("site")
    assert len(site["ts"]) == 3 and site["series"]["site-1"] == [0.01, 0.02, 0.03]
    assert view.stats.worst() == [
        {"device_id": "gw-1-pump-0", "anomaly_count": 15, "max_score": 0.55}
    ]
    kinds = [e["kind"] for e in view.timeline.events()]
    assert kinds == ["retrain", "candidate", "promoted"]
    view.add("rollout", {"event": "shadow-progress", "gateway_id": "gw-1"}, T0)
    assert len(view.timeline.events()) == 3  # progress reports stay off the timeline


def test_stats_keep_the_last_row_of_a_window_and_a_bounded_history() -> None:
    s = series.StatsSeries(max_windows=2)
    for start in (0, 60_000, 120_000):
        s.add({"window_start": start, "window_end": start + 60_000, "scope": "site",
               "scope_key": "a", "anomaly_rate": 0.1})  # fmt: skip
    assert s.rates("site")["ts"] == [120.0, 180.0]


def test_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(DashboardError, match="--token"):
        DashboardConfig(host="10.0.0.5")
    with pytest.raises(DashboardError, match="at least"):
        DashboardConfig(host="0.0.0.0", token="short")
    assert DashboardConfig(host="::1").url == "http://[::1]:8787/"
    assert "s3cret" not in repr(DashboardConfig(host="0.0.0.0", token="s3cret-s3cret-s3cret"))


def test_one_spelling_of_a_model_version_on_every_page() -> None:
    """The topology's model arrives as its sidecar's ``pump-ae-v1``, a rolled-out one as the
    update's ``v2``: the gateways, alerts and timeline show both as ``vN``."""
    view = FleetView(stale_after_s=60)
    alert = {"alert_id": "a", "gateway_id": "gw-1", "device_id": "p-1", "device_type": "pump",
             "site": "s1", "ts": T0, "score": 0.9, "model_version": "pump-ae-v1"}  # fmt: skip
    view.add("alert", alert, now_ms=T0)
    assert view.gateways(now_ms=T0)[0]["models"] == {}
    live = {"gateway_id": "gw-1", "device_type": "pump", "event": "live",
            "version": "pump-ae-v1", "live_version": "pump-ae-v1", "created_at": T0}  # fmt: skip
    view.add("rollout", live, now_ms=T0)
    assert view.gateways(now_ms=T0)[0]["models"] == {"pump": "v1"}
    view.add("rollout", {**live, "event": "promoted", "version": "v2", "live_version": "v2"},
             now_ms=T0 + 1)  # fmt: skip
    row = view.gateways(now_ms=T0 + 1)[0]
    assert row["models"] == {"pump": "v2"} and row["rollout"]["pump"]["version"] == "v2"
    assert [a["model_version"] for a in view.alerts(AlertFilter())] == ["v1"]
    labels = [e["label"] for e in view.timeline.events()]
    assert labels == ["live v1", "promoted v2"]
