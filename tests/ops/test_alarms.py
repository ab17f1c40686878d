"""The alarm evaluator: status + readings + now -> raised / cleared, with hold times (fake clock, no I/O)."""

from __future__ import annotations

from typing import Any

from bridge.config import MetricsConfig
from bridge.ops.alarms import AlarmCleared, AlarmEvaluator, AlarmRaised, AlarmState, render_alarm
from bridge.ops.readings import CdrBacklog, DiskUsage, Readings

SETTINGS = MetricsConfig(smpp_unbound_alarm_s=30, cdr_behind_alarm_s=3600, disk_alarm_percent=90,
                         tick_overrun_alarm=10, ha_peer_lost_alarm_s=5)  # fmt: skip


def status(smpp: str = "bound", gateways: tuple[bool, ...] = (True,), late: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "smpp": {"state": smpp, "reason": "connection refused" if smpp != "bound" else ""},
        "sip": {"trunk_groups": [{"name": "main", "gateways": [
            {"address": f"10.0.0.{i}:5060", "up": up} for i, up in enumerate(gateways, 1)]}]},  # fmt: skip
        "mixer": {"late_ticks": late, "skipped_ticks": 0},
        **extra,
    }


def test_smpp_unbound_is_raised_only_after_the_hold_and_cleared_once() -> None:
    alarms = AlarmEvaluator(SETTINGS)
    assert alarms.evaluate(status(smpp="connecting"), Readings(), 100.0) == []
    assert alarms.state("smpp_unbound") is AlarmState.PENDING
    assert alarms.evaluate(status(smpp="connecting"), Readings(), 129.0) == []
    (raised,) = alarms.evaluate(status(smpp="connecting"), Readings(), 130.0)
    assert isinstance(raised, AlarmRaised) and raised.since == 100.0 and "connection refused" in raised.detail
    assert alarms.evaluate(status(smpp="connecting"), Readings(), 200.0) == []  # raised once
    (cleared,) = alarms.evaluate(status(), Readings(), 210.0)
    assert isinstance(cleared, AlarmCleared) and cleared.lasted_s == 110.0
    assert alarms.state("smpp_unbound") is AlarmState.CLEAR and alarms.active() == []


def test_a_short_unbind_never_alarms_and_disabled_smpp_is_not_unbound() -> None:
    alarms = AlarmEvaluator(SETTINGS)
    alarms.evaluate(status(smpp="connecting"), Readings(), 0.0)
    assert alarms.evaluate(status(), Readings(), 10.0) == []  # back before the hold: nothing to clear
    assert alarms.evaluate(status(smpp="disabled"), Readings(), 1000.0) == []


def test_each_gateway_down_is_its_own_alarm_at_once() -> None:
    alarms = AlarmEvaluator(SETTINGS)
    events = alarms.evaluate(status(gateways=(False, False)), Readings(), 0.0)
    assert {e.subject for e in events} == {"main/10.0.0.1:5060", "main/10.0.0.2:5060"}
    (cleared,) = alarms.evaluate(status(gateways=(True, False)), Readings(), 5.0)
    assert isinstance(cleared, AlarmCleared) and cleared.subject == "main/10.0.0.1:5060"


def test_cdr_behind_and_disk_filling_come_from_the_readings() -> None:
    alarms = AlarmEvaluator(SETTINGS)
    readings = Readings(cdr=(CdrBacklog("sftp", 3, 3599.0), CdrBacklog("ftp", 0, 0.0)),
                        disk=DiskUsage("/var/lib/bridge", 100, 11))  # fmt: skip
    assert alarms.evaluate(status(), readings, 0.0) == []
    readings = Readings(cdr=(CdrBacklog("sftp", 3, 3600.0),), disk=DiskUsage("/var/lib/bridge", 100, 10))
    events = alarms.evaluate(status(), readings, 1.0)
    expected = {("cdr_delivery_behind", "sftp"), ("disk_filling", "/var/lib/bridge")}
    assert {(e.alarm, e.subject) for e in events} == expected
    assert "3 CDR file(s) for sftp" in next(e.detail for e in events if e.alarm == "cdr_delivery_behind")


def test_tick_overruns_count_over_a_sliding_minute() -> None:
    alarms = AlarmEvaluator(SETTINGS)
    assert alarms.evaluate(status(late=100), Readings(), 0.0) == []  # the counter's history starts here
    assert alarms.evaluate(status(late=110), Readings(), 30.0) == []  # 10 in the window: not more than 10
    (raised,) = alarms.evaluate(status(late=111), Readings(), 40.0)
    assert raised.alarm == "tick_overruns" and "11 late" in raised.detail
    assert alarms.evaluate(status(late=125), Readings(), 60.0) == []  # 25 since t=0: still raised, once
    assert alarms.evaluate(status(late=125), Readings(), 95.0) == []  # 15 since t=30 (the last sample <= 35)
    (cleared,) = alarms.evaluate(status(late=125), Readings(), 120.0)  # 0 since t=60
    assert isinstance(cleared, AlarmCleared)


def test_ha_peer_lost_when_the_status_has_ha_and_mail_text() -> None:
    alarms = AlarmEvaluator(SETTINGS)
    assert alarms.evaluate(status(ha={"peer": "bridge-b", "peer_silence_s": 1.0}), Readings(), 0.0) == []
    (raised,) = alarms.evaluate(status(ha={"peer": "bridge-b", "peer_silence_s": 6.0}), Readings(), 1.0)
    assert raised.alarm == "ha_peer_lost" and raised.subject == "bridge-b"
    subject, body = render_alarm(raised, node="bridge-a")
    assert subject == "[bridge bridge-a] ALARM ha_peer_lost bridge-b" and "silent for 6.0 s" in body
    (cleared,) = alarms.evaluate(status(), Readings(), 3.0)
    assert render_alarm(cleared, node="bridge-a")[0] == "[bridge bridge-a] CLEARED ha_peer_lost bridge-b"
