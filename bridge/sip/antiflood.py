"""Per-source request rate limit (token bucket), pure: the caller passes ``now``.

Each source IP owns a bucket of ``limit`` tokens refilled at ``limit / window_s`` per second; a request takes
one token or is refused. With the defaults (30 requests / 2 s) a well-behaved trunk never notices it, while a
scanner sending hundreds of INVITEs per second is dropped before sippy parses anything.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class Antiflood:
    """Token buckets keyed by source IP. ``allow(ip, now)`` -> True if the request may be processed."""

    def __init__(self, *, limit: int, window_s: float, max_sources: int = 10_000) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("antiflood: limit and window must be positive")
        self.limit = float(limit)
        self.rate = limit / window_s
        self.max_sources = max_sources
        self._buckets: dict[str, _Bucket] = {}
        self.dropped = 0

    def allow(self, source: str, now: float) -> bool:
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._prune(now)
            bucket = self._buckets[source] = _Bucket(self.limit, now)
        else:
            elapsed = max(0.0, now - bucket.stamp)
            bucket.tokens = min(self.limit, bucket.tokens + elapsed * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        self.dropped += 1
        return False

    def _prune(self, now: float) -> None:
        """Forget sources whose bucket has refilled (they carry no state worth keeping)."""
        full = [ip for ip, b in self._buckets.items() if b.tokens + (now - b.stamp) * self.rate >= self.limit]
        for ip in full:
            del self._buckets[ip]
        if len(self._buckets) >= self.max_sources:  # still full: a distributed flood, drop the oldest half
            for ip in sorted(self._buckets, key=lambda k: self._buckets[k].stamp)[: self.max_sources // 2]:
                del self._buckets[ip]

    def __len__(self) -> int:
        return len(self._buckets)
