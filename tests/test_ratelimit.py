"""The shared rate-control pieces (bridge/ratelimit.py) with a fake clock."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.ratelimit import Backoff, KeyedBuckets, TokenBucket, backoff_ceiling, jittered


def test_token_bucket_allows_rate_per_second_after_the_burst() -> None:
    bucket = TokenBucket(rate=50, now=0.0)
    assert sum(bucket.take(0.0) for _ in range(100)) == 10  # burst: one second's worth, capped at 10
    assert bucket.wait_time(0.0) == pytest.approx(0.02)
    sent = sum(bucket.take(t / 1000) for t in range(1, 10_001))  # 10 s of polling every ms
    assert sent == pytest.approx(500, abs=1)


def test_token_bucket_does_not_save_up_beyond_the_burst() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert sum(bucket.take(100.0) for _ in range(10)) == 3
    assert not bucket.full(100.0) and bucket.full(101.5)


def test_token_bucket_ignores_a_clock_that_goes_back() -> None:
    bucket = TokenBucket(rate=1, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)  # no refill from the past
    assert bucket.take(11.0)


@given(st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=200))
def test_token_bucket_never_exceeds_burst_plus_rate_times_elapsed(steps: list[float]) -> None:
    bucket = TokenBucket(rate=5, burst=3, now=0.0)
    now = taken = 0.0
    for step in steps:
        now += step
        taken += bucket.take(now)
        assert taken <= 3 + 5 * now + 1e-9


def test_keyed_buckets_limit_each_key_on_its_own() -> None:
    buckets: KeyedBuckets[str] = KeyedBuckets(rate=15, burst=30)
    assert sum(buckets.take("10.0.0.1", 0.0) for _ in range(100)) == 30
    assert buckets.take("10.0.0.2", 0.0)  # another source is not affected
    assert buckets.refused == 70
    assert buckets.take("10.0.0.1", 1.0)  # refilled at 15/s


def test_keyed_buckets_forget_full_buckets_then_the_oldest_half() -> None:
    buckets: KeyedBuckets[int] = KeyedBuckets(rate=1, burst=2, max_keys=10)
    for key in range(10):
        buckets.take(key, float(key))
    assert len(buckets) == 10
    buckets.take(100, 5.0)  # keys 0..3 have refilled by t=5 (one token used, back after 1 s) and are forgotten
    assert len(buckets) <= 10
    for key in range(200, 230):  # a distributed flood at one instant: the table stays bounded
        buckets.take(key, 5.0)
    assert len(buckets) <= 10


def test_backoff_ceiling_doubles_from_min_and_caps() -> None:
    assert [backoff_ceiling(n, 1.0, 10.0) for n in range(0, 7)] == [1, 1, 2, 4, 8, 10, 10]
    assert backoff_ceiling(10_000, 1.0, 10.0) == 10.0  # no overflow however long the outage


def test_backoff_doubles_with_jitter_and_caps() -> None:
    backoff = Backoff(1.0, 10.0, random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 10, 10, 10, 10]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not in step
    backoff.reset()
    assert backoff.next_delay() <= 1.0


@given(st.floats(min_value=0.001, max_value=1e6), st.integers(min_value=0, max_value=2**32))
def test_jitter_stays_in_the_upper_half(ceiling: float, seed: int) -> None:
    assert ceiling / 2 <= jittered(ceiling, random.Random(seed)) <= ceiling


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0)
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0, random.Random())
    with pytest.raises(ValueError):
        KeyedBuckets(rate=1, burst=0)
