from __future__ import annotations

import datetime as dt

import pytest

from bridge.cdr.health import (
    TRANSITIONS,
    AlertDown,
    AlertRecovered,
    Delivered,
    Failed,
    HealthError,
    TargetHealth,
    TargetState,
    Tick,
)

T = dt.datetime(2026, 1, 1, 12, 0)


def s(seconds: float) -> dt.datetime:
    return T + dt.timedelta(seconds=seconds)


def health() -> TargetHealth:
    return TargetHealth("p", alert_after_s=600, retry_min_s=60, retry_max_s=300)


def test_backoff_doubles_up_to_the_maximum_and_resets_on_success() -> None:
    h = health()
    delays = []
    now = T
    for _ in range(5):
        h.handle(Failed(now, "refused"))
        assert h.next_attempt_at is not None
        delays.append((h.next_attempt_at - now).total_seconds())
        assert not h.due(now) and h.due(h.next_attempt_at)
        now = h.next_attempt_at
    assert delays == [60, 120, 240, 300, 300]
    h.handle(Delivered(now))
    assert (h.state, h.failures, h.due(now)) == (TargetState.UP, 0, True)


def test_a_short_blip_sends_no_mail() -> None:
    h = health()
    assert h.handle(Failed(T, "x")) == []
    assert h.state is TargetState.FAILING
    assert h.handle(Delivered(s(120))) == []
    assert h.state is TargetState.UP


def test_alert_once_past_the_threshold_then_recovery_once() -> None:
    h = health()
    assert h.handle(Failed(T, "refused")) == []
    assert h.tick(s(599)) == []
    assert h.tick(s(600)) == [AlertDown("p", T, "refused")]
    assert h.handle(Failed(s(700), "refused again")) == []  # already alerted
    assert h.tick(s(5000)) == []
    assert h.handle(Delivered(s(6000))) == [AlertRecovered("p", T, s(6000))]
    assert h.handle(Delivered(s(6001))) == []


def test_threshold_reached_on_a_failed_attempt_alerts_too() -> None:
    h = health()
    h.handle(Failed(T, "a"))
    assert h.handle(Failed(s(650), "b")) == [AlertDown("p", T, "b")]


def test_host_key_refusal_alerts_at_once() -> None:
    h = health()
    assert h.handle(Failed(T, "host key", security=True)) == [AlertDown("p", T, "host key")]
    assert h.state is TargetState.DOWN


def test_every_state_and_event_is_in_the_table() -> None:
    for state in TargetState:
        for event in (Delivered, Failed, Tick):
            assert (state, event) in TRANSITIONS


def test_disallowed_transition_raises() -> None:
    h = health()
    h.state = TargetState.DOWN
    h.failing_since = T
    # DOWN may only stay DOWN on a tick; force an impossible move through the private setter
    with pytest.raises(HealthError):
        h._set_state(Tick(T), TargetState.UP)


def test_snapshot_and_restore_continue_an_outage_without_a_second_alert() -> None:
    t0 = dt.datetime(2026, 3, 28, 9, 0)
    first = TargetHealth("p", alert_after_s=3600, retry_min_s=60, retry_max_s=600)
    first.handle(Failed(t0, "down"))
    assert [type(a) for a in first.handle(Failed(t0 + dt.timedelta(hours=1), "down"))] == [AlertDown]
    again = TargetHealth("p", alert_after_s=3600, retry_min_s=60, retry_max_s=600)
    again.restore(first.snapshot())
    assert again.snapshot() == first.snapshot()
    assert again.state is TargetState.DOWN and not again.due(t0 + dt.timedelta(hours=1, seconds=60))
    assert again.handle(Failed(t0 + dt.timedelta(hours=2), "down")) == []
    assert again.handle(Delivered(t0 + dt.timedelta(hours=3))) == [AlertRecovered("p", t0, t0 + dt.timedelta(hours=3))]
