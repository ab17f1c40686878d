"""Per-source request rate limit for SIP, pure: the caller passes ``now``.

Each source IP owns a token bucket (:class:`bridge.ratelimit.KeyedBuckets`) of ``limit`` tokens refilled at
``limit / window_s`` per second; a request takes one token or is refused. With the defaults (30 requests / 2 s)
a well-behaved trunk never notices it, while a scanner sending hundreds of INVITEs per second is dropped before
sippy parses anything.
"""

from __future__ import annotations

from bridge.ratelimit import KeyedBuckets


class Antiflood:
    """Token buckets keyed by source IP. ``allow(ip, now)`` -> True if the request may be processed."""

    def __init__(self, *, limit: int, window_s: float, max_sources: int = 10_000) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("antiflood: limit and window must be positive")
        self._buckets: KeyedBuckets[str] = KeyedBuckets(rate=limit / window_s, burst=float(limit), max_keys=max_sources)

    def allow(self, source: str, now: float) -> bool:
        return self._buckets.take(source, now)

    @property
    def dropped(self) -> int:
        return self._buckets.refused

    def __len__(self) -> int:
        return len(self._buckets)
