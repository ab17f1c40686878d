from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.billing import LedgerError
from bridge.billing.gate import Allowed, Profile, check_dial, settle_leg
from bridge.billing.ledger import (
    PREPAID,
    Deadlines,
    Ledger,
    MovementKind,
    Payer,
    PayerKind,
    can_start,
    crossed_below,
    deadlines,
    max_duration,
    movement,
)
from bridge.billing.policy import UNLOCKED, DestinationPolicy, DialWindow, Limits, Refusal, Usage
from bridge.billing.rating import Direction, Rate, RateEntry, RatePlan, price

AT = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
POSTPAID_100 = Payer(PayerKind.POSTPAID, D("100"))


def per_min(value: str, first: int = 60, step: int = 60, fee: str = "0") -> Rate:
    return Rate("p", "44", "UK", Direction.OUTBOUND, D(value), D(fee), first, step)


def test_movements_are_signed_by_kind_and_the_balance_is_their_sum() -> None:
    ledger = Ledger(PREPAID)
    ledger.record(movement(MovementKind.TOP_UP, D("10"), AT, "portal: operator"))
    ledger.record(movement(MovementKind.CHARGE, D("2.5"), AT, "leg 1"))
    ledger.record(movement(MovementKind.REFUND, D("0.5"), AT, "leg 1 dropped"))
    ledger.record(movement(MovementKind.ADJUSTMENT, D("-1"), AT, "correction"))
    assert [m.amount for m in ledger.movements] == [D("10"), D("-2.5"), D("0.5"), D("-1")]
    assert ledger.balance == D("7") == sum(m.amount for m in ledger.movements)
    assert Ledger(PREPAID, list(ledger.movements)).balance == D("7")


def test_a_prepaid_balance_cannot_go_below_zero() -> None:
    ledger = Ledger(PREPAID, [movement(MovementKind.TOP_UP, D("1"), AT)])
    with pytest.raises(LedgerError):
        ledger.record(movement(MovementKind.CHARGE, D("1.0001"), AT))
    with pytest.raises(LedgerError):
        ledger.record(movement(MovementKind.ADJUSTMENT, D("-2"), AT))
    ledger.record(movement(MovementKind.CHARGE, D("1"), AT))
    assert ledger.balance == 0 and ledger.spendable == 0


def test_a_postpaid_balance_stops_at_the_credit_limit() -> None:
    ledger = Ledger(POSTPAID_100)
    ledger.record(movement(MovementKind.CHARGE, D("100"), AT))
    assert ledger.balance == D("-100") and ledger.spendable == 0
    with pytest.raises(LedgerError):
        ledger.record(movement(MovementKind.CHARGE, D("0.0001"), AT))
    unlimited = Ledger(Payer(PayerKind.POSTPAID))
    unlimited.record(movement(MovementKind.CHARGE, D("1000000"), AT))
    assert unlimited.spendable is None


@pytest.mark.parametrize(
    "bad",
    [
        lambda: movement(MovementKind.TOP_UP, D("-1"), AT),
        lambda: movement(MovementKind.CHARGE, D("0"), AT),
        lambda: movement(MovementKind.ADJUSTMENT, D("0"), AT),
        lambda: movement(MovementKind.TOP_UP, D("0.00001"), AT),
        lambda: movement(MovementKind.TOP_UP, D("Infinity"), AT),
        lambda: Payer(PayerKind.PREPAID, D("10")),
        lambda: Payer(PayerKind.POSTPAID, D("-10")),
        lambda: max_duration(D("1"), per_min("0.1"), share=0),
    ],
)
def test_malformed_movements_and_payers_raise_our_error(bad: object) -> None:
    with pytest.raises(LedgerError):
        bad()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("balance", "rate", "seconds"),
    [
        ("1.00", per_min("0.60"), 60),  # 60/60: one minute, not 100 s
        ("1.19", per_min("0.60"), 60),
        ("1.20", per_min("0.60"), 120),
        ("0.59", per_min("0.60"), 0),
        ("1.00", per_min("0.60", 30, 6), 96),  # 30/6: 0.30 + 11 * 0.06 = 0.96
        ("1.00", per_min("0.60", 1, 1), 100),  # 1/1: every second
        ("0.0099", per_min("0.60", 1, 1), 0),
        ("1.00", per_min("0.60", 60, 60, fee="0.50"), 0),  # the fee plus the first minute is 1.10
        ("1.10", per_min("0.60", 60, 60, fee="0.50"), 60),
        ("0.0001", per_min("0.0001", 30, 30), 60),  # half up: 30 s costs 0.0001 (0.00005), 60 s too
        ("0.50", per_min("0", 60, 60, fee="0.50"), None),  # fee paid, time free
        ("0", per_min("0"), None),  # free
    ],
)
def test_max_duration_in_whole_increments(balance: str, rate: Rate, seconds: int | None) -> None:
    assert max_duration(D(balance), rate) == seconds
    if seconds:
        assert price(rate, seconds).amount <= D(balance) < price(rate, seconds + rate.next_increment).amount
    assert can_start(D(balance), rate) is (seconds != 0)


def test_reserved_money_and_shares() -> None:
    rate = per_min("0.60", 1, 1)
    assert max_duration(D("10"), rate, reserved=D("9")) == 100
    assert max_duration(D("10"), rate, share=4) == 250  # four legs, 2.50 each
    assert max_duration(D("0.02"), rate, share=4) == 1  # a share too small still gets the first increment
    assert max_duration(None, rate) is None


def test_warning_a_minute_before_the_cut() -> None:
    assert deadlines(100.0, 90) == Deadlines(130.0, 190.0)
    assert deadlines(100.0, 30) == Deadlines(100.0, 130.0)  # shorter than the warning: warn at answer
    assert deadlines(100.0, None) is None


def test_low_balance_crossing_fires_once_and_rearms_after_a_top_up() -> None:
    threshold = D("1.00")
    balances = [D(x) for x in ("5", "2", "1.00", "0.50", "0", "3", "0.9")]
    fired = [crossed_below(a, b, threshold) for a, b in zip(balances, balances[1:], strict=False)]
    assert fired == [False, True, False, False, False, True]
    assert not crossed_below(D("5"), D("0"), None)


PROFILE = Profile(
    plan=RatePlan("p", (RateEntry("44", "UK", D("0.60"), first_increment=30, next_increment=6),)),
    payer=PREPAID,
    zone=dt.UTC,
    limits=Limits(),
    destinations=DestinationPolicy(("44",)),
)


def grant(balance: str, reserved: str = "0") -> Allowed:
    result = check_dial(
        PROFILE,
        "+441612345678",
        balance=D(balance),
        reserved=D(reserved),
        usage=Usage(),
        lock=UNLOCKED,
        window=DialWindow(),
        at=AT,
        now=0.0,
    )
    assert isinstance(result, Allowed)
    return result


def test_settle_prices_the_leg_at_its_grant_and_clamps_to_it() -> None:
    allowed = grant("1.00")
    assert allowed.max_seconds == 96
    settled = settle_leg(PREPAID, allowed, 96.0004, balance=D("1.00"), at=AT, reference="leg 7")
    assert settled.charge is not None and settled.charge.billed_seconds == 96
    assert settled.movement is not None and settled.movement.amount == D("-0.9600")
    assert settled.movement.reference == "leg 7" and settled.balance == D("0.04")
    late = settle_leg(PREPAID, allowed, 130.0, balance=D("1.00"), at=AT, reference="leg 7")
    assert late.charge is not None and late.charge.billed_seconds == 96  # cut late: still the grant


def test_an_unanswered_leg_moves_nothing() -> None:
    settled = settle_leg(PREPAID, grant("1.00"), 0.0, balance=D("1.00"), at=AT, reference="leg 8")
    assert settled.movement is None and settled.charge is not None and settled.charge.amount == 0


def test_settle_never_takes_a_prepaid_balance_below_zero() -> None:
    # two legs granted without passing each other's reservation (a caller bug): the floor still holds
    first, second = grant("1.00"), grant("1.00")
    one = settle_leg(PREPAID, first, 96, balance=D("1.00"), at=AT, reference="a")
    two = settle_leg(PREPAID, second, 96, balance=one.balance, at=AT, reference="b")
    assert two.balance == 0 and two.uncollected == D("0.9200")
    assert two.movement is not None and two.movement.amount == D("-0.04")


def test_settle_reports_the_low_balance_crossing_and_the_credit_limit() -> None:
    settled = settle_leg(
        PREPAID, grant("1.00"), 60, balance=D("1.00"), at=AT, reference="x", low_balance_threshold=D("0.50")
    )
    assert settled.low_balance and not settled.credit_limit_reached
    company = Payer(PayerKind.POSTPAID, D("1"))
    allowed = grant("1.00")
    reached = settle_leg(company, allowed, 96, balance=D("-0.04"), at=AT, reference="y")
    assert reached.balance == D("-1.00") and reached.credit_limit_reached


# --- the ledger under random traffic ---------------------------------------------------------------------

NUMBERS = ("+442071234567", "+441612345678", "+12125550100", "+33142000000", "+4420799999")


@st.composite
def plans(draw: st.DrawFn) -> RatePlan:
    increments = st.sampled_from([(60, 60), (30, 6), (1, 1), (60, 1), (6, 6)])
    money = st.decimals(min_value=0, max_value=3, places=3)
    items = []
    for prefix in ("44", "4420", "1", "33"):
        first, step = draw(increments)
        items.append(RateEntry(prefix, prefix, draw(money), draw(money) / 10, first, step))
    return RatePlan("random", tuple(items))


top_up = st.tuples(st.just("top_up"), st.decimals(min_value="0.01", max_value=20, places=2))
dial_op = st.tuples(st.just("dial"), st.integers(0, len(NUMBERS) - 1), st.integers(1, 4))
end_op = st.tuples(st.just("end"), st.integers(0, 10), st.floats(0, 7200, allow_nan=False))
adjust_op = st.tuples(st.just("adjust"), st.decimals(min_value=-5, max_value=5, places=4))
payers = st.sampled_from([PREPAID, Payer(PayerKind.POSTPAID, D("10")), Payer(PayerKind.POSTPAID, D("0.50"))])


@settings(max_examples=300, deadline=None)
@given(plans(), payers, st.lists(st.one_of(top_up, dial_op, end_op, adjust_op), max_size=60))
def test_random_legs_and_top_ups_keep_the_ledger_whole(
    plan: RatePlan, payer: Payer, ops: list[tuple[Any, ...]]
) -> None:
    anywhere = DestinationPolicy((), allow_international=True)
    profile = Profile(plan=plan, payer=payer, zone=dt.UTC, limits=Limits(), destinations=anywhere)
    ledger = Ledger(payer)
    up: list[Allowed] = []
    # An operator's negative adjustment while legs are up may eat money they reserved: the floor still
    # holds (the charge is capped), but only without one is every leg paid in full.
    squeezed = False

    def end(index: int, duration: float) -> None:
        allowed = up.pop(index % len(up))
        settled = settle_leg(payer, allowed, duration, balance=ledger.balance, at=AT, reference="leg")
        assert settled.charge is not None
        if not squeezed:
            assert settled.uncollected == 0
        collected = settled.charge.amount - settled.uncollected
        if settled.movement is None:
            assert collected == 0
        else:
            assert settled.movement.amount == -collected
            assert ledger.record(settled.movement) == settled.balance

    for op in ops:
        if op[0] == "top_up":
            ledger.record(movement(MovementKind.TOP_UP, op[1], AT, "top-up"))
        elif op[0] == "adjust" and op[1] != 0:
            floor = payer.floor
            if floor is not None and op[1] < 0 and ledger.balance + op[1] < floor:
                with pytest.raises(LedgerError):
                    ledger.record(movement(MovementKind.ADJUSTMENT, op[1], AT))
            else:
                ledger.record(movement(MovementKind.ADJUSTMENT, op[1], AT))
                squeezed = squeezed or (op[1] < 0 and bool(up))
        elif op[0] == "dial":
            reserved = sum((a.reservation for a in up), D(0))
            result = check_dial(
                profile, NUMBERS[op[1]], balance=ledger.balance, reserved=reserved, usage=Usage(),
                lock=UNLOCKED, window=DialWindow(), at=AT, now=0.0, share=op[2],
            )  # fmt: skip
            if isinstance(result, Allowed):
                up.append(result)
            else:
                assert isinstance(result, Refusal) and result.cause in ("insufficient_funds", "no_rate")
        elif op[0] == "end" and up:
            end(op[1], op[2])
        assert ledger.balance == sum((m.amount for m in ledger.movements), D(0))
        if payer.floor is not None:
            assert ledger.balance >= payer.floor
    while up:
        end(0, 1e9)  # every leg still up runs to its cut
    assert ledger.balance == sum((m.amount for m in ledger.movements), D(0))
    if payer.floor is not None:
        assert ledger.balance >= payer.floor
