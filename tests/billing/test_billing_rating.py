from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest

from bridge.billing import BillingError, RatePlanError
from bridge.billing.prefixes import PrefixTable, digits
from bridge.billing.rating import (
    Direction,
    PeakWindow,
    Rate,
    RateEntry,
    RatePlan,
    billed_seconds,
    describe,
    format_money,
    plan_for,
    price,
    rate,
)

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
T = dt.datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def flat(first: int, step: int, per_min: str = "0.60", fee: str = "0") -> Rate:
    return Rate("p", "44", "UK", Direction.OUTBOUND, D(per_min), D(fee), first, step)


PLAN = RatePlan(
    "std",
    (
        RateEntry("44", "UK", D("0.050")),
        RateEntry("4420", "UK London", D("0.020")),
        RateEntry("442079", "UK London Westminster", D("0.015"), D("0.10"), 30, 6),
        RateEntry("1", "US/Canada", D("0.010"), first_increment=1, next_increment=1, inbound_price=D("0.005")),
    ),
)


@pytest.mark.parametrize(
    ("first", "step", "seconds", "billed"),
    [
        (60, 60, 0, 0),
        (60, 60, 1, 60),
        (60, 60, 60, 60),
        (60, 60, 61, 120),
        (60, 60, 179, 180),
        (30, 6, 1, 30),
        (30, 6, 30, 30),
        (30, 6, 31, 36),
        (30, 6, 36, 36),
        (30, 6, 37, 42),
        (1, 1, 0, 0),
        (1, 1, 1, 1),
        (1, 1, 59, 59),
        (1, 1, 3601, 3601),
    ],
)
def test_billed_seconds_follow_the_increments(first: int, step: int, seconds: int, billed: int) -> None:
    assert billed_seconds(flat(first, step), seconds) == billed


def test_price_of_each_increment_scheme() -> None:
    assert price(flat(60, 60), 61).amount == D("1.2000")
    assert price(flat(30, 6), 31).amount == D("0.3600")
    assert price(flat(1, 1), 7).amount == D("0.0700")


def test_a_zero_second_leg_costs_nothing_not_even_the_connection_fee() -> None:
    charge = price(flat(60, 60, fee="0.25"), 0)
    assert (charge.billed_seconds, charge.amount) == (0, D("0"))


def test_connection_fee_is_added_once_per_answered_leg() -> None:
    assert price(flat(60, 60, "0.60", "0.25"), 1).amount == D("0.8500")
    assert price(flat(60, 60, "0.60", "0.25"), 125).amount == D("2.0500")


def test_rounding_is_half_up_to_four_decimals_per_leg() -> None:
    # 0.0001/min for 30 s is 0.00005 exactly: half up gives 0.0001 (banker's rounding would give 0)
    assert price(flat(30, 30, "0.0001"), 30).amount == D("0.0001")
    # 1/1 at 0.020/min: 7 s = 0.0023333... -> 0.0023
    assert price(flat(1, 1, "0.020"), 7).amount == D("0.0023")
    assert isinstance(price(flat(1, 1), 7).amount, D)


def test_negative_duration_is_an_error() -> None:
    with pytest.raises(RatePlanError):
        price(flat(1, 1), -1)


def test_longest_prefix_wins() -> None:
    assert rate(PLAN, "+442079460000", T, UTC).prefix == "442079"  # type: ignore[union-attr]
    assert rate(PLAN, "+442071234567", T, UTC).prefix == "4420"  # type: ignore[union-attr]
    assert rate(PLAN, "+441612345678", T, UTC).prefix == "44"  # type: ignore[union-attr]
    assert rate(PLAN, "+12125550100", T, UTC).prefix == "1"  # type: ignore[union-attr]


def test_an_uncovered_number_has_no_rate_and_no_plan_rates_nothing() -> None:
    assert rate(PLAN, "+33142000000", T, UTC) is None
    assert rate(None, "+442071234567", T, UTC) is None


def test_malformed_numbers_raise_our_error() -> None:
    for bad in ("", "+", "44abc", "+44 20 ☎", "1234567890123456"):
        with pytest.raises(RatePlanError):
            rate(PLAN, bad, T, UTC)
    assert issubclass(RatePlanError, BillingError)
    assert digits("+44 (20) 7946-0000") == "442079460000"


def test_inbound_legs_use_the_inbound_price_and_no_connection_fee() -> None:
    inbound = rate(PLAN, "+442079460000", T, UTC, Direction.INBOUND)
    assert inbound is not None
    assert (inbound.price_per_min, inbound.connection_fee, inbound.first_increment) == (D("0"), D("0"), 30)
    assert rate(PLAN, "+15550100", T, UTC, Direction.INBOUND).price_per_min == D("0.005")  # type: ignore[union-attr]


def test_plan_for_takes_the_company_plan_else_the_default() -> None:
    own = RatePlan("acme", (RateEntry("33", "France", D("0.03")),))
    assert plan_for(own, PLAN) is own
    assert plan_for(None, PLAN) is PLAN
    assert plan_for(None, None) is None


def test_human_rendering() -> None:
    assert describe("+442071234567", rate(PLAN, "+442071234567", T, UTC)) == (
        "+442071234567 -> UK London, 0.020/min, 60/60"
    )
    assert describe("442079460000", rate(PLAN, "442079460000", T, UTC)) == (
        "+442079460000 -> UK London Westminster, 0.015/min, 30/6, connection 0.100"
    )
    assert "no rate" in describe("+33142000000", None)
    assert (format_money(D("0.02")), format_money(D("0.0125")), format_money(D("2"))) == ("0.020", "0.0125", "2.000")


def test_entries_are_validated() -> None:
    with pytest.raises(RatePlanError):
        RateEntry("+44", "UK", D("0.1"))
    with pytest.raises(RatePlanError):
        RateEntry("44", "UK", D("-0.1"))
    with pytest.raises(RatePlanError):
        RateEntry("44", "UK", D("0.1"), first_increment=0)
    with pytest.raises(RatePlanError):
        RateEntry("44", "UK", D("NaN"))
    with pytest.raises(RatePlanError):
        PeakWindow(dt.time(8), dt.time(8), D("0.1"))
    with pytest.raises(RatePlanError):
        RatePlan("dup", (RateEntry("44", "UK", D("0.1")), RateEntry("44", "UK again", D("0.2"))))


def test_prefix_table_matches_a_linear_scan() -> None:
    prefixes = ["1", "12", "123", "44", "4420", "442079", "9"]
    table = PrefixTable((p, p) for p in prefixes)
    for number in ("1234", "1299", "1", "442079000", "44201", "4419", "9", "8", "", "12"):
        scan = max((p for p in prefixes if number.startswith(p)), key=len, default=None)
        found = table.longest(number)
        assert (found[0] if found else None) == scan


# --- peak / off-peak across DST ------------------------------------------------------------------------

PEAK_PLAN = RatePlan(
    "peak",
    (
        RateEntry("33", "France", D("0.010"), peak=PeakWindow(dt.time(8), dt.time(20), D("0.030"))),
        RateEntry("1", "US", D("0.010"), peak=PeakWindow(dt.time(8), dt.time(20), D("0.030"))),
        RateEntry("44", "UK night", D("0.010"), peak=PeakWindow(dt.time(22), dt.time(6), D("0.050"))),
    ),
)


def is_peak(number: str, at: dt.datetime, zone: dt.tzinfo) -> bool:
    found = rate(PEAK_PLAN, number, at, zone)
    assert found is not None
    assert found.price_per_min == (D("0.030") if found.peak else D("0.010")) or found.prefix == "44"
    return found.peak


@pytest.mark.parametrize(
    ("utc", "peak"),
    [
        # Winter (CET = UTC+1): 07:30 UTC is 08:30 local.
        (dt.datetime(2026, 3, 28, 6, 30), False),  # 07:30 CET
        (dt.datetime(2026, 3, 28, 7, 30), True),  # 08:30 CET
        (dt.datetime(2026, 3, 28, 18, 59), True),  # 19:59 CET
        (dt.datetime(2026, 3, 28, 19, 0), False),  # 20:00 CET
        # Sunday 29 March 2026 at 01:00 UTC Paris moves to CEST = UTC+2.
        (dt.datetime(2026, 3, 29, 6, 30), True),  # 08:30 CEST: a fixed +1 offset would say 07:30
        (dt.datetime(2026, 3, 29, 5, 59), False),  # 07:59 CEST
        (dt.datetime(2026, 3, 29, 18, 0), False),  # 20:00 CEST
        # Sunday 25 October 2026 at 01:00 UTC back to CET.
        (dt.datetime(2026, 10, 24, 6, 0), True),  # 08:00 CEST, the day before
        (dt.datetime(2026, 10, 25, 6, 0), False),  # 07:00 CET
        (dt.datetime(2026, 10, 25, 7, 0), True),  # 08:00 CET
    ],
)
def test_peak_window_follows_dst_in_paris(utc: dt.datetime, peak: bool) -> None:
    assert is_peak("+33142000000", utc.replace(tzinfo=UTC), PARIS) is peak
    assert is_peak("+33142000000", utc, PARIS) is peak  # naive = UTC, the database's convention


@pytest.mark.parametrize(
    ("utc", "peak"),
    [
        (dt.datetime(2026, 3, 7, 12, 59), False),  # 07:59 EST (UTC-5)
        (dt.datetime(2026, 3, 7, 13, 0), True),  # 08:00 EST
        (dt.datetime(2026, 3, 8, 12, 0), True),  # 08:00 EDT (UTC-4) after the 8 March switch
        (dt.datetime(2026, 3, 8, 11, 59), False),  # 07:59 EDT
        (dt.datetime(2026, 3, 9, 0, 0), False),  # 20:00 EDT
        (dt.datetime(2026, 11, 1, 12, 30), False),  # 07:30 EST after the 1 November switch
        (dt.datetime(2026, 11, 1, 13, 0), True),  # 08:00 EST
        (dt.datetime(2026, 10, 31, 12, 0), True),  # 08:00 EDT
    ],
)
def test_peak_window_follows_dst_in_new_york(utc: dt.datetime, peak: bool) -> None:
    assert is_peak("+12125550100", utc.replace(tzinfo=UTC), NEW_YORK) is peak


def test_the_repeated_hour_in_autumn_is_rated_by_instant() -> None:
    # 2026-11-01 01:30 happens twice in New York; both instants are off-peak for an 08-20 window and the
    # 22-06 window is evaluated on the local wall time of each instant.
    first = dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    second = dt.datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST
    assert not is_peak("+12125550100", first, NEW_YORK)
    assert not is_peak("+12125550100", second, NEW_YORK)
    assert is_peak("+441612345678", first, NEW_YORK) and is_peak("+441612345678", second, NEW_YORK)


def test_a_window_wrapping_midnight() -> None:
    london = ZoneInfo("Europe/London")
    at = dt.datetime(2026, 7, 1, tzinfo=london)
    assert is_peak("+441612345678", at.replace(hour=23), london)
    assert is_peak("+441612345678", at.replace(hour=0), london)
    assert is_peak("+441612345678", at.replace(hour=5, minute=59), london)
    assert not is_peak("+441612345678", at.replace(hour=6), london)
    assert not is_peak("+441612345678", at.replace(hour=21, minute=59), london)
