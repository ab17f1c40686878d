"""The 20 ms tick on absolute time: never drifts, reports lateness, skips what it cannot catch up.

Deadline ``n`` is ``start + n * period``, computed from the start, never by adding periods to the
previous wake-up, so sleep jitter does not accumulate. When a wake-up comes a whole period (or
more) late, the missed ticks are *skipped* and counted, not run back to back: media frames that
late are useless, and a burst of ticks would only flood the legs. ``Tick.index`` stays on the
absolute grid, so RTP timestamps derived from it stay continuous.

``TickClock`` and ``LatenessStats`` are pure (``now`` is passed in); ``run_ticks`` is the tiny
asyncio glue around them.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

PERIOD: Final = 0.020
#: Ticks later than this count as "late" in the stats (the media budget of one tick).
LATE_THRESHOLD: Final = 0.002


@dataclass(frozen=True)
class Tick:
    """One tick to run: ``index`` on the absolute grid, its ``deadline``, how late we woke up."""

    index: int
    deadline: float
    lateness: float
    skipped: int  # ticks skipped just before this one


def deadline(start: float, period: float, index: int) -> float:
    """Absolute time of tick ``index``."""
    return start + index * period


class TickClock:
    """Pure tick scheduler. ``poll(now)`` returns the tick due now (or ``None``); ``next_deadline`` says when.

    ``early``: a tick may run up to this long before its deadline (counted as lateness 0). The event
    loop's timers wake up to a millisecond late (epoll rounds its timeout up to whole ms), so the
    glue aims a little early instead of always landing late.
    """

    def __init__(self, start: float, period: float = PERIOD, *, early: float = 0.0) -> None:
        if not period > 0:
            raise ValueError("period must be positive")
        if not 0 <= early < period:
            raise ValueError("early must be in [0, period)")
        self.start = start
        self.period = period
        self.early = early
        self.next_index = 0
        self.skipped = 0

    @property
    def next_deadline(self) -> float:
        return deadline(self.start, self.period, self.next_index)

    @property
    def next_wake(self) -> float:
        """When to wake up for the next tick (its deadline minus ``early``)."""
        return self.next_deadline - self.early

    def poll(self, now: float) -> Tick | None:
        """The tick to run at ``now``, skipping any whose successor is already due."""
        if now < self.next_wake:
            return None
        # Latest index whose deadline has passed; everything before it (since next_index) is skipped.
        latest = max(self.next_index, math.floor((now - self.start) / self.period + 1e-9))
        skipped = latest - self.next_index
        self.skipped += skipped
        due = deadline(self.start, self.period, latest)
        tick = Tick(latest, due, max(0.0, now - due), skipped)
        self.next_index = latest + 1
        return tick


@dataclass
class LatenessStats:
    """Lateness of recent ticks (ring of ``window`` samples) plus lifetime counters."""

    window: int = 3000  # one minute of ticks
    late_threshold: float = LATE_THRESHOLD
    ticks: int = 0
    late_ticks: int = 0
    skipped: int = 0
    max_lateness: float = 0.0
    _ring: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        self._ring = np.zeros(self.window)

    def record(self, tick: Tick) -> None:
        self._ring[self.ticks % self.window] = tick.lateness
        self.ticks += 1
        self.skipped += tick.skipped
        if tick.lateness > self.late_threshold:
            self.late_ticks += 1
        self.max_lateness = max(self.max_lateness, tick.lateness)

    def percentile(self, q: float) -> float:
        """``q``-th percentile (0-100) of the lateness of the recent ticks, in seconds."""
        count = min(self.ticks, self.window)
        return float(np.percentile(self._ring[:count], q)) if count else 0.0

    def summary(self) -> dict[str, float | int]:
        return {
            "ticks": self.ticks,
            "late_ticks": self.late_ticks,
            "skipped": self.skipped,
            "lateness_p50_ms": round(self.percentile(50) * 1000, 3),
            "lateness_p99_ms": round(self.percentile(99) * 1000, 3),
            "lateness_max_ms": round(self.max_lateness * 1000, 3),
        }


TickCallback = Callable[[Tick], "None | Awaitable[None]"]


async def run_ticks(
    callback: TickCallback,
    *,
    period: float = PERIOD,
    early: float = 0.0005,
    stats: LatenessStats | None = None,
    stop: asyncio.Event | None = None,
    time: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> LatenessStats:
    """Call ``callback(tick)`` every ``period`` on absolute time until ``stop`` is set (or cancelled).

    ``time`` defaults to the running loop's monotonic clock; ``time`` and ``sleep`` are injectable
    so tests drive it with a fake clock. The callback may be sync or async; it should not block.
    ``early``: see ``TickClock`` (a tick runs at most this long before its deadline, never after
    it if the loop can help it).
    """
    clock_time = time or asyncio.get_running_loop().time
    stats = stats if stats is not None else LatenessStats()
    clock = TickClock(clock_time(), period, early=early)
    while stop is None or not stop.is_set():
        tick = clock.poll(clock_time())
        if tick is not None:
            stats.record(tick)
            result = callback(tick)
            if inspect.isawaitable(result):
                await result
        # Always yield, even when the next tick is already due: sockets and timers must run between
        # ticks, or a loop that falls behind would starve the very I/O that feeds it.
        await sleep(max(0.0, clock.next_wake - clock_time()))
    return stats
