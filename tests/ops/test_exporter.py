"""The exporter's families from a snapshot, the pure accumulators, and the Grafana dashboard: valid JSON whose
every query names a metric the exporter really exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest

from bridge.ops.metrics import (
    BridgeCollector,
    CallCounts,
    Histogram,
    PacketTotals,
    Snapshot,
    TickTimes,
    metric_names,
    registry_for,
)
from bridge.ops.readings import CdrBacklog, DiskUsage, PortalCounts, Readings

DASHBOARD = Path(__file__).resolve().parents[2] / "etc" / "grafana" / "bridge-dashboard.json"


def snapshot() -> Snapshot:
    ticks = TickTimes()
    for duration, lateness in ((0.0004, 0.0), (0.003, 0.0001), (0.2, 0.03)):
        ticks.observe(duration, lateness)
    calls = CallCounts()
    calls.answered("main")
    calls.failure("main", 486)
    calls.failure("main", 0)
    status = {
        "uptime_s": 12.5, "role": "active",
        "smpp": {"state": "bound", "mo": 3, "mt": 4, "dlr": 2, "failed": 0, "outbox": 1, "in_flight": 0},
        "sip": {"legs": 2, "dialed": 5, "incoming": 1, "route_advances": 0, "trunk_groups": [
            {"name": "main", "gateways": [{"address": "127.0.0.1:5070", "up": True}]}]},
        "mixer": {"conferences": 1, "participants": 2, "mixer_participants": 2, "late_ticks": 1, "skipped_ticks": 0},
    }  # fmt: skip
    legs = [{"status": "connected", "talking": True}, {"status": "connected"}, {"status": "ringing"}]
    return Snapshot(status, [{"legs": legs}], ticks, calls, {"packets_in": 10, "packets_out": 9, "lost": 1},
                    [("smpp_unbound", "")], 4)  # fmt: skip


def readings() -> Readings:
    return Readings((CdrBacklog("sftp", 2, 30.0),), PortalCounts(1, 0, 2), DiskUsage("/", 100, 40))


def test_the_scrape_text_shows_legs_ticks_calls_smpp_cdr_portal() -> None:
    text = generate_latest(registry_for(BridgeCollector(snapshot, readings))).decode()
    assert "bridge_up 1.0" in text
    assert 'bridge_legs{status="connected"} 2.0' in text and 'bridge_legs{status="ringing"} 1.0' in text
    assert 'bridge_tick_duration_seconds_bucket{le="0.0005"} 1.0' in text
    assert 'bridge_tick_duration_seconds_bucket{le="+Inf"} 3.0' in text
    assert "bridge_tick_duration_seconds_count 3.0" in text
    assert 'bridge_calls_failed_total{cause="486",trunk_group="main"} 1.0' in text
    assert 'bridge_calls_failed_total{cause="no response",trunk_group="main"} 1.0' in text
    assert 'bridge_trunk_gateway_up{gateway="127.0.0.1:5070",trunk_group="main"} 1.0' in text
    assert "bridge_smpp_bound 1.0" in text and "bridge_smpp_delivery_receipts_total 2.0" in text
    assert 'bridge_cdr_files_pending{target="sftp"} 2.0' in text and "bridge_portal_lockouts_total 1.0" in text
    assert 'bridge_alarm_active{alarm="smpp_unbound",subject=""} 1.0' in text
    assert 'bridge_ha_role{role="active"} 1.0' in text and "bridge_rtp_packets_lost_total 1.0" in text


def test_an_engine_that_does_not_answer_scrapes_as_down_and_readings_may_fail() -> None:
    def broken() -> Readings:
        raise OSError("database is down")

    text = generate_latest(registry_for(BridgeCollector(lambda: None, broken))).decode()
    assert "bridge_up 0.0" in text and "bridge_legs" not in text


def test_histogram_buckets_are_cumulative() -> None:
    hist = Histogram((0.001, 0.01))
    for value in (0.0005, 0.001, 0.005, 1.0):
        hist.observe(value)
    assert hist.cumulative() == [("0.001", 2.0), ("0.01", 3.0), ("+Inf", 4.0)] and hist.total == 1.0065


def test_packet_totals_stay_monotonic_when_legs_end() -> None:
    totals = PacketTotals()
    assert totals.update({"a": {"packets_in": 5, "packets_out": 4, "lost": 1}}) == {
        "packets_in": 5, "packets_out": 4, "lost": 1}  # fmt: skip
    totals.update({"a": {"packets_in": 8, "packets_out": 7, "lost": 1}, "b": {"packets_in": 2}})
    assert totals.update({"b": {"packets_in": 3}}) == {"packets_in": 11, "packets_out": 7, "lost": 1}


def test_grafana_dashboard_is_valid_and_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = metric_names(registry_for(BridgeCollector(snapshot, readings)))
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["targets"], panel
        for target in panel["targets"]:
            used |= set(re.findall(r"\bbridge_[a-z_]+", target["expr"]))
    assert used, "the dashboard queries nothing"
    assert used <= exported, sorted(used - exported)
    shown = {name.removesuffix("_total").removesuffix("_bucket") for name in used}
    for must in ("bridge_legs", "bridge_tick_duration_seconds", "bridge_tick_lateness_seconds", "bridge_calls_setup",
                 "bridge_calls_failed", "bridge_smpp_bound", "bridge_cdr_files_pending", "bridge_ha_role",
                 "bridge_ha_heartbeat_age_seconds", "bridge_portal_lockouts", "bridge_rtp_packets_lost",
                 "bridge_smpp_queue_depth", "bridge_cdr_oldest_pending_age_seconds"):  # fmt: skip
        assert must in shown, must
