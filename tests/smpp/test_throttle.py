from __future__ import annotations

import random

import pytest

from bridge.smpp.throttle import Backoff, TokenBucket


def test_token_bucket_allows_rate_per_second_after_the_burst() -> None:
    bucket = TokenBucket(rate=50, now=0.0)
    assert sum(bucket.take(0.0) for _ in range(100)) == 10  # burst: one second's worth, capped at 10
    assert bucket.wait_time(0.0) == pytest.approx(0.02)
    sent = sum(bucket.take(t / 1000) for t in range(1, 10_001))  # 10 s of polling every ms
    assert sent == pytest.approx(500, abs=1)


def test_token_bucket_does_not_save_up_beyond_the_burst() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert sum(bucket.take(100.0) for _ in range(10)) == 3


def test_backoff_doubles_with_jitter_and_caps() -> None:
    backoff = Backoff(1.0, 10.0, random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 10, 10, 10, 10]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0)
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0, random.Random())
