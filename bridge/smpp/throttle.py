"""Rate control for the SMSC link: a token bucket for submits per second, and capped exponential
back-off with jitter for reconnects and throttled submits. Pure: callers pass ``now`` and the RNG."""

from __future__ import annotations

import random


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up (``burst`` defaults to one second's worth
    capped at 10, so a long idle period does not release a flood the SMSC would throttle)."""

    def __init__(self, rate: float, burst: float | None = None, *, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, min(rate, 10.0))
        self._tokens = self.burst
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def take(self, now: float) -> bool:
        """Spend one token if one is available."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_time(self, now: float) -> float:
        """Seconds until a token is available (0 if one is now)."""
        self._refill(now)
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate


class Backoff:
    """Delay ``min_s * 2**n`` capped at ``max_s``, with "equal jitter": uniformly in [d/2, d].

    The jitter keeps a fleet of ESMEs (or our own transmitter and receiver binds) from retrying in step.
    """

    def __init__(self, min_s: float, max_s: float, rng: random.Random) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self._rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        """Delay before the next attempt; each call counts one more failure."""
        ceiling = min(self.max_s, self.min_s * 2.0 ** min(self.failures, 60))
        self.failures += 1
        return ceiling / 2.0 + self._rng.random() * ceiling / 2.0

    def reset(self) -> None:
        self.failures = 0
