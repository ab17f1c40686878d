"""Antiflood token bucket, driven with a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sip.antiflood import Antiflood


def test_burst_up_to_limit_then_refused() -> None:
    flood = Antiflood(limit=30, window_s=2.0)
    assert [flood.allow("10.0.0.1", 100.0) for _ in range(31)] == [True] * 30 + [False]
    assert flood.dropped == 1


def test_refills_at_limit_per_window() -> None:
    flood = Antiflood(limit=30, window_s=2.0)
    for _ in range(30):
        flood.allow("10.0.0.1", 0.0)
    assert not flood.allow("10.0.0.1", 0.0)
    assert flood.allow("10.0.0.1", 2 / 30 + 1e-9)  # one token back after window/limit seconds
    assert not flood.allow("10.0.0.1", 2 / 30 + 1e-9)
    assert sum(flood.allow("10.0.0.1", 10.0) for _ in range(40)) == 30  # never more than the limit


def test_sources_are_independent() -> None:
    flood = Antiflood(limit=2, window_s=1.0)
    assert flood.allow("a", 0) and flood.allow("a", 0) and not flood.allow("a", 0)
    assert flood.allow("b", 0)


def test_memory_is_bounded() -> None:
    flood = Antiflood(limit=5, window_s=1.0, max_sources=100)
    for i in range(1000):
        flood.allow(f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(flood) <= 100


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        Antiflood(limit=0, window_s=1)
    with pytest.raises(ValueError):
        Antiflood(limit=1, window_s=0)


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200))
def test_never_more_than_limit_plus_refill(times: list[float]) -> None:
    """Over any sequence of request times, accepted <= limit + elapsed * rate."""
    times = sorted(times)
    flood = Antiflood(limit=3, window_s=1.0)
    accepted = sum(flood.allow("x", t) for t in times)
    assert accepted <= 3 + (times[-1] - times[0]) * 3 + 1e-6
