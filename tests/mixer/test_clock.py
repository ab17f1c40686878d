"""The tick clock on absolute time, driven by a fake clock: no drift, lateness, skipped ticks."""

from __future__ import annotations

import asyncio
import random

import pytest

from bridge.mixer.clock import LatenessStats, Tick, TickClock, run_ticks


class FakeClock:
    """Time only moves when someone sleeps (plus a jitter) or when a callback 'works'."""

    def __init__(self, start: float = 1000.0, jitter: float = 0.0015, seed: int = 7) -> None:
        self.now = start
        self.jitter = jitter
        self.rng = random.Random(seed)

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds) + self.rng.uniform(0, self.jitter)


def test_poll_runs_each_deadline_once_on_the_absolute_grid() -> None:
    clock = TickClock(10.0, 0.02)
    assert clock.poll(9.999) is None
    first = clock.poll(10.0005)
    assert first is not None and first.index == 0 and first.lateness == pytest.approx(0.0005)
    assert clock.poll(10.001) is None  # same deadline: nothing new
    assert clock.next_deadline == pytest.approx(10.02)
    second = clock.poll(10.0203)
    assert second == Tick(1, pytest.approx(10.02), pytest.approx(0.0003), 0)


def test_late_wake_up_skips_missed_ticks_and_stays_on_grid() -> None:
    clock = TickClock(0.0, 0.02)
    clock.poll(0.0)
    tick = clock.poll(0.0751)  # ticks 1, 2 missed; 3 is due (0.06)
    assert tick is not None
    assert (tick.index, tick.skipped) == (3, 2)
    assert tick.deadline == pytest.approx(0.06) and tick.lateness == pytest.approx(0.0151)
    assert clock.skipped == 2 and clock.next_deadline == pytest.approx(0.08)


def test_run_ticks_does_not_drift_with_jittery_sleeps() -> None:
    fake = FakeClock()
    stop = asyncio.Event()
    ticks: list[Tick] = []

    def on_tick(tick: Tick) -> None:
        ticks.append(tick)
        fake.now += 0.004  # the mix takes 4 ms
        if len(ticks) == 10_000:
            stop.set()

    stats = asyncio.run(run_ticks(on_tick, stats=LatenessStats(), stop=stop, time=fake.time, sleep=fake.sleep))
    assert [t.index for t in ticks] == list(range(10_000))  # no tick lost, none run twice
    # The 10,000th tick is due exactly 199.98 s after the start: sleep jitter never accumulated.
    assert ticks[-1].deadline == pytest.approx(1000.0 + 9_999 * 0.02, abs=1e-9)
    assert all(0 <= t.lateness <= 0.0015 + 1e-9 for t in ticks)
    assert stats.ticks == 10_000 and stats.skipped == 0 and stats.late_ticks == 0
    assert 0 < stats.percentile(50) < stats.percentile(99) <= 0.0015


def test_run_ticks_counts_skips_when_a_tick_overruns() -> None:
    fake = FakeClock(jitter=0.0)
    stop = asyncio.Event()
    seen: list[Tick] = []

    async def on_tick(tick: Tick) -> None:  # async callbacks are awaited
        seen.append(tick)
        fake.now += 0.05 if tick.index == 3 else 0.001  # one 50 ms stall
        if len(seen) == 10:
            stop.set()

    stats = asyncio.run(run_ticks(on_tick, stop=stop, time=fake.time, sleep=fake.sleep, early=0.0))
    indexes = [t.index for t in seen]
    assert indexes[:5] == [0, 1, 2, 3, 5]  # tick 4 is skipped, tick 5 runs late
    assert seen[4].skipped == 1 and seen[4].lateness == pytest.approx(0.010)
    assert stats.skipped == 1 and stats.late_ticks == 1
    assert stats.summary()["lateness_max_ms"] == pytest.approx(10.0)


def test_invalid_period() -> None:
    with pytest.raises(ValueError):
        TickClock(0.0, 0.0)


def test_run_ticks_yields_to_the_event_loop_even_when_always_late() -> None:
    # Every tick overruns its period: other tasks (socket callbacks) must still get to run between ticks.
    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        fake_now = [start]
        stop = asyncio.Event()
        ticks = 0
        others = 0

        def on_tick(tick: Tick) -> None:
            nonlocal ticks
            ticks += 1
            fake_now[0] += 0.03  # 30 ms of work per 20 ms tick
            if ticks == 20:
                stop.set()

        async def other() -> None:
            nonlocal others
            while not stop.is_set():
                others += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        await run_ticks(on_tick, stop=stop, time=lambda: fake_now[0])
        await task
        return ticks, others

    ticks, others = asyncio.run(scenario())
    assert ticks == 20
    assert others >= 19


def test_early_wake_runs_the_tick_before_its_deadline_without_drift() -> None:
    clock = TickClock(0.0, 0.02, early=0.001)
    assert clock.poll(0.0) is not None
    assert clock.next_wake == pytest.approx(0.019)
    assert clock.poll(0.0185) is None
    tick = clock.poll(0.0193)
    assert tick is not None and tick.index == 1 and tick.lateness == 0.0 and tick.deadline == pytest.approx(0.02)
    tick = clock.poll(0.0415)  # late for tick 2 (0.04): not a skip, lateness 1.5 ms
    assert tick is not None and (tick.index, tick.skipped) == (2, 0) and tick.lateness == pytest.approx(0.0015)
    with pytest.raises(ValueError):
        TickClock(0.0, 0.02, early=0.02)
