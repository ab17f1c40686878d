"""Rate control shared by every service: token buckets and capped exponential back-off. Pure: ``now`` and
the RNG come from the caller.

- :class:`TokenBucket`: ``rate`` tokens per second, at most ``burst`` saved up. SMPP submits per second, the
  dial pacer's calls per second per trunk group.
- :class:`KeyedBuckets`: one bucket per key (a source IP), forgetting full buckets when the table is large.
  SIP antiflood.
- :func:`backoff_ceiling` / :class:`Backoff`: ``min_s * 2**n`` capped at ``max_s``, optionally with "equal
  jitter" (uniform in ``[d/2, d]``) so a fleet of clients does not retry in step. The SMPP bind, the
  outbox's throttled submits and the CDR targets' retries.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up (``burst`` defaults to one second's worth
    capped at 10, so a long idle period does not release a flood the peer would throttle)."""

    def __init__(self, rate: float, burst: float | None = None, *, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, min(rate, 10.0))
        self.tokens = self.burst
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if one is available."""
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self, now: float) -> float:
        """Seconds until a token is available (0 if one is now)."""
        self.refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        """Would the bucket be full at ``now`` (it then carries no state worth keeping)?"""
        return self.tokens + max(0.0, now - self.stamp) * self.rate >= self.burst


class KeyedBuckets(Generic[K]):
    """A :class:`TokenBucket` per key, created full on first sight; at most ``max_keys`` kept."""

    def __init__(self, *, rate: float, burst: float, max_keys: int = 10_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[K, TokenBucket] = {}
        self.refused = 0

    def take(self, key: K, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now=now)
        if bucket.take(now):
            return True
        self.refused += 1
        return False

    def _prune(self, now: float) -> None:
        """Forget keys whose bucket has refilled; if still full (a distributed flood), the oldest half."""
        for key in [key for key, bucket in self._buckets.items() if bucket.full(now)]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k].stamp)[: self.max_keys // 2]
            for key in oldest:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


def backoff_ceiling(failures: int, min_s: float, max_s: float) -> float:
    """The delay after ``failures`` consecutive failures (1 -> ``min_s``, doubling, capped at ``max_s``)."""
    return min(max_s, min_s * 2.0 ** min(max(failures, 1) - 1, 60))


def jittered(ceiling: float, rng: random.Random) -> float:
    """"Equal jitter": uniformly in ``[ceiling / 2, ceiling]``."""
    return ceiling / 2.0 + rng.random() * ceiling / 2.0


@dataclass
class Backoff:
    """Counts consecutive failures; :meth:`next_delay` is the jittered delay before the next attempt."""

    min_s: float
    max_s: float
    rng: random.Random
    failures: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError("need 0 < min_s <= max_s")

    def next_delay(self) -> float:
        """Delay before the next attempt; each call counts one more failure."""
        self.failures += 1
        return jittered(backoff_ceiling(self.failures, self.min_s, self.max_s), self.rng)

    def reset(self) -> None:
        self.failures = 0
