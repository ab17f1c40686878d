"""Benchmark: rating throughput for a 50,000-prefix plan, and what ``check_dial`` adds per dial.

    .venv/bin/python bench/rating.py [--prefixes 50000] [--legs 20000] [--rounds 7]

Printed, each the median of ``--rounds`` rounds:

- ``indexed``   : legs rated per second by :func:`bridge.billing.rating.rate` + ``price`` (longest prefix by
                  one dict probe per prefix length present);
- ``linear``    : baseline in the same run, the naive longest match: scan every entry of the plan, keep the
                  longest prefix of the number, then the same ``price``; run on fewer legs (it is ~10^4 x
                  slower) and reported per second; then the ratio indexed / linear;
- ``check_dial``: microseconds per prepaid dial check (lock, number, destination deny list, hourly window,
                  concurrency, rate, maximum duration) against ``rate`` alone, and the added cost of an IC
                  launch of 10 members (10 checks).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from zoneinfo import ZoneInfo

from bridge.billing.gate import Profile, check_dial
from bridge.billing.ledger import PREPAID
from bridge.billing.policy import DEFAULT_DENY, UNLOCKED, DenyRule, DestinationPolicy, DialWindow, Limits, Usage
from bridge.billing.rating import Direction, Rate, RateEntry, RatePlan, price, rate

COUNTRY_CODES = ("1", "7", "20", "27", "31", "33", "34", "39", "44", "49", "52", "55", "61", "81", "86", "91", "234")
AT = dt.datetime(2026, 1, 15, 9, 30, tzinfo=dt.UTC)
ZONE = ZoneInfo("Europe/Paris")


def make_plan(size: int, rng: random.Random) -> RatePlan:
    prefixes: set[str] = set(COUNTRY_CODES)
    while len(prefixes) < size:
        cc = rng.choice(COUNTRY_CODES)
        prefixes.add(cc + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 6))))
    increments = [(60, 60), (30, 6), (1, 1)]
    entries = []
    for i, prefix in enumerate(sorted(prefixes)):
        first, step = increments[i % 3]
        cents = Decimal(rng.randint(1, 500)) / 1000
        entries.append(RateEntry(prefix, f"dest {prefix}", cents, Decimal("0.01") * (i % 2), first, step))
    return RatePlan("bench", tuple(entries))


def make_numbers(plan: RatePlan, count: int, rng: random.Random) -> list[str]:
    prefixes = [e.prefix for e in plan.entries]
    out = []
    for _ in range(count):
        base = rng.choice(prefixes)
        out.append("+" + base + "".join(rng.choice("0123456789") for _ in range(12 - len(base))))
    return out


def linear_rate(plan: RatePlan, number: str) -> Rate | None:
    """The naive longest match: every entry compared with the number."""
    digits = number.removeprefix("+")
    best: RateEntry | None = None
    for entry in plan.entries:
        if digits.startswith(entry.prefix) and (best is None or len(entry.prefix) > len(best.prefix)):
            best = entry
    if best is None:
        return None
    return Rate(plan.name, best.prefix, best.description, Direction.OUTBOUND, best.price_per_min,
                best.connection_fee, best.first_increment, best.next_increment)  # fmt: skip


def per_second(run: Callable[[], int], rounds: int) -> float:
    """Median items per second of ``rounds`` runs of ``run`` (which returns how many items it did)."""
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        done = run()
        rates.append(done / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--prefixes", type=int, default=50_000)
    parser.add_argument("--legs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(18)
    plan = make_plan(args.prefixes, rng)
    numbers = make_numbers(plan, args.legs, rng)
    few = numbers[: max(20, args.legs // 500)]
    for number in few:  # the baseline must agree with the index before it is timed
        assert linear_rate(plan, number) == rate(plan, number, AT, ZONE), number

    def indexed() -> int:
        for number in numbers:
            found = rate(plan, number, AT, ZONE)
            assert found is not None
            price(found, 95)
        return len(numbers)

    def linear() -> int:
        for number in few:
            found = linear_rate(plan, number)
            assert found is not None
            price(found, 95)
        return len(few)

    fast = per_second(indexed, args.rounds)
    slow = per_second(linear, args.rounds)
    print(f"plan: {len(plan)} prefixes; {len(numbers)} legs indexed, {len(few)} legs linear; median of {args.rounds}")
    print(f"indexed  rate+price : {fast:12,.0f} legs/s  ({1e6 / fast:8.2f} us/leg)")
    print(f"linear   rate+price : {slow:12,.0f} legs/s  ({1e6 / slow:8.2f} us/leg)  [baseline, same run]")
    print(f"ratio indexed/linear: {fast / slow:12,.0f} x")

    deny = (*DEFAULT_DENY, DenyRule("4490", "premium"), DenyRule("4491", "premium"), DenyRule("1900", "premium"))
    profile = Profile(
        plan=plan,
        payer=PREPAID,
        zone=ZONE,
        limits=Limits(company_legs=500, subscriber_legs=40, legs_per_hour=1_000_000),
        destinations=DestinationPolicy(("33",), deny=deny, allow_international=True),
    )
    window = DialWindow()
    for t in range(100):
        window.record(float(t))
    usage, balance, reserved = Usage(120, 9), Decimal("25.00"), Decimal("3.2000")

    def checks() -> int:
        for i, number in enumerate(numbers):
            check_dial(profile, number, balance=balance, reserved=reserved, usage=usage, lock=UNLOCKED,
                       window=window, at=AT, now=200.0, share=1 + i % 10)  # fmt: skip
        return len(numbers)

    def rates_only() -> int:
        for number in numbers:
            rate(plan, number, AT, ZONE)
        return len(numbers)

    check = 1e6 / per_second(checks, args.rounds)
    bare = 1e6 / per_second(rates_only, args.rounds)
    print(f"check_dial (prepaid): {check:8.2f} us/dial; rate() alone {bare:.2f} us/dial [baseline, same run]")
    print(f"check_dial / rate   : {check / bare:8.1f} x; adds {check - bare:.2f} us/dial over rating, "
          f"{10 * check:.0f} us per 10-member IC launch")  # fmt: skip


if __name__ == "__main__":
    main()
