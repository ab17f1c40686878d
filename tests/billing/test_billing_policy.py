from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal as D

import pytest

from bridge.billing.gate import Allowed, Profile, check_dial, check_dial_in
from bridge.billing.ledger import PREPAID, Payer, PayerKind
from bridge.billing.policy import (
    UNLOCKED,
    CompanyCallLimit,
    DenyRule,
    DestinationDenied,
    DestinationPolicy,
    DialWindow,
    HourlyCapReached,
    InsufficientFunds,
    InternationalDenied,
    InvalidNumber,
    Limits,
    LockReason,
    LockState,
    NoRate,
    Refusal,
    SubscriberCallLimit,
    SubscriberLocked,
    Usage,
    apply_credit_rule,
    check_concurrency,
)
from bridge.billing.rating import RateEntry, RatePlan

AT = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
PLAN = RatePlan(
    "std",
    (
        RateEntry("44", "UK", D("0.050")),
        RateEntry("4420", "UK London", D("0.020")),
        RateEntry("33", "France", D("0.030")),
        RateEntry("4490", "UK premium", D("1.50")),
        RateEntry("8816", "Iridium", D("5.00")),
        RateEntry("440800", "UK freephone", D("0"), inbound_price=D("0.02")),
    ),
)
POLICY = DestinationPolicy(
    ("44",), deny=(DenyRule("4490", "premium"), DenyRule("4491", "premium"), DenyRule("881", "satellite"))
)
PROFILE = Profile(plan=PLAN, payer=PREPAID, zone=dt.UTC, limits=Limits(), destinations=POLICY)


def dial(number: str, profile: Profile = PROFILE, **kwargs: object) -> Allowed | Refusal:
    args: dict[str, object] = {
        "balance": D("10"),
        "reserved": D("0"),
        "usage": Usage(),
        "lock": UNLOCKED,
        "window": DialWindow(),
        "at": AT,
        "now": 1000.0,
    }
    args.update(kwargs)
    return check_dial(profile, number, **args)  # type: ignore[arg-type]


def cause(result: Allowed | Refusal) -> str:
    assert isinstance(result, Refusal), result
    return result.cause


def test_an_allowed_dial_carries_rate_grant_and_reservation() -> None:
    result = dial("+442071234567", balance=D("1.00"))
    assert isinstance(result, Allowed)
    assert result.rate is not None and result.rate.prefix == "4420"
    assert result.max_seconds == 3000 and result.reservation == D("1.0000")
    deadlines = result.deadlines(50.0)
    assert deadlines is not None and (deadlines.warn_at, deadlines.cut_at) == (2990.0, 3050.0)


def test_deny_list_by_prefix() -> None:
    premium = dial("+449012345678")
    assert premium == DestinationDenied("449012345678", "4490", "premium")
    assert premium.cause == "destination_denied" and "premium" in premium.message
    satellite = dial("+8816123456")
    assert isinstance(satellite, DestinationDenied) and satellite.category == "satellite"


def test_international_only_when_allowed_per_company() -> None:
    assert dial("+33142000000") == InternationalDenied("33142000000")
    abroad = dataclasses.replace(POLICY, allow_international=True)
    assert isinstance(dial("+33142000000", dataclasses.replace(PROFILE, destinations=abroad)), Allowed)
    # the deny list still applies to a company allowed abroad, unless it exempts the prefix
    assert isinstance(dial("+8816123456", dataclasses.replace(PROFILE, destinations=abroad)), DestinationDenied)
    exempt = dataclasses.replace(POLICY, allow=("8816",))
    assert isinstance(dial("+8816123456", dataclasses.replace(PROFILE, destinations=exempt)), Allowed)


def test_a_number_no_plan_covers_is_refused_never_dialled_free() -> None:
    uk_only = dataclasses.replace(PROFILE, plan=RatePlan("uk", (RateEntry("4420", "UK London", D("0.02")),)))
    assert dial("+441612345678", uk_only) == NoRate("441612345678")
    assert cause(dial("+441612345678", dataclasses.replace(PROFILE, plan=None))) == "no_rate"


def test_malformed_number() -> None:
    assert dial("call me") == InvalidNumber("call me")


def test_locked_subscriber_cannot_dial_out_but_may_dial_in() -> None:
    locked = UNLOCKED.lock()
    result = dial("+442071234567", lock=locked)
    assert result == SubscriberLocked(frozenset({LockReason.MANUAL}))
    assert isinstance(
        check_dial_in(PROFILE, "+15550100", balance=D("0"), reserved=D("0"), usage=Usage(), at=AT), Allowed
    )


def test_lock_reasons_are_lifted_separately() -> None:
    state = LockState().lock(LockReason.MANUAL).lock(LockReason.CREDIT_LIMIT)
    assert state.unlock(LockReason.MANUAL).locked
    assert state.unlock(LockReason.CREDIT_LIMIT).locked
    assert not state.unlock(LockReason.MANUAL).unlock(LockReason.CREDIT_LIMIT).locked
    credit = SubscriberLocked(frozenset({LockReason.CREDIT_LIMIT}))
    assert "credit limit" in credit.message


def test_auto_lock_when_a_postpaid_company_reaches_its_credit_limit() -> None:
    company = Payer(PayerKind.POSTPAID, D("100"))
    assert not apply_credit_rule(UNLOCKED, company, D("-99.99")).locked
    locked = apply_credit_rule(UNLOCKED, company, D("-100"))
    assert locked.reasons == {LockReason.CREDIT_LIMIT}
    assert not apply_credit_rule(locked, company, D("-50")).locked  # paid: lifted automatically
    manual = apply_credit_rule(UNLOCKED.lock(), company, D("-50"))
    assert manual.locked  # a manual lock stays
    assert not apply_credit_rule(UNLOCKED, Payer(PayerKind.POSTPAID), D("-1000000")).locked  # no limit
    assert not apply_credit_rule(UNLOCKED, PREPAID, D("0")).locked


def test_concurrent_limits_company_then_subscriber() -> None:
    limits = Limits(company_legs=10, subscriber_legs=3)
    assert check_concurrency(limits, Usage(9, 2)) is None
    assert check_concurrency(limits, Usage(10, 0)) == CompanyCallLimit(10)
    assert check_concurrency(limits, Usage(5, 3)) == SubscriberCallLimit(3)
    assert check_concurrency(limits, Usage(5, 3), subscriber=False) is None
    profile = dataclasses.replace(PROFILE, limits=limits)
    assert cause(dial("+442071234567", profile, usage=Usage(5, 3))) == "subscriber_call_limit"
    refused = check_dial_in(profile, "+15550100", balance=D("0"), reserved=D("0"), usage=Usage(10, 0), at=AT)
    assert cause(refused) == "company_call_limit"


def test_the_n_plus_first_dial_is_refused() -> None:
    profile = dataclasses.replace(PROFILE, limits=Limits(subscriber_legs=3))
    results = [dial("+442071234567", profile, usage=Usage(n, n)) for n in range(4)]
    assert [type(r) for r in results] == [Allowed, Allowed, Allowed, SubscriberCallLimit]


def test_legs_per_hour_is_a_sliding_window() -> None:
    window = DialWindow()
    profile = dataclasses.replace(PROFILE, limits=Limits(legs_per_hour=3))
    for t in (0.0, 600.0, 1200.0):
        assert isinstance(dial("+442071234567", profile, window=window, now=t), Allowed)
        window.record(t)
    refused = dial("+442071234567", profile, window=window, now=1800.0)
    assert refused == HourlyCapReached(3, 1800)
    assert "Try again in 30 min" in refused.message
    assert window.count(1800.0) == 3  # checking does not record
    assert isinstance(dial("+442071234567", profile, window=window, now=3600.0), Allowed)  # the first left


def test_insufficient_funds_when_the_first_increment_cannot_be_paid() -> None:
    refused = dial("+442071234567", balance=D("0.0199"))
    assert refused == InsufficientFunds("442071234567", D("0.0200"), D("0.0199"))
    assert "0.020 needed" in refused.message
    assert isinstance(dial("+442071234567", balance=D("0.0200")), Allowed)
    # money reserved by legs up counts as spent
    assert cause(dial("+442071234567", balance=D("1.00"), reserved=D("0.99"))) == "insufficient_funds"


def test_postpaid_dials_on_credit() -> None:
    company = dataclasses.replace(PROFILE, payer=Payer(PayerKind.POSTPAID, D("5")))
    result = dial("+442071234567", company, balance=D("-4.00"))
    assert isinstance(result, Allowed) and result.max_seconds == 3000
    unlimited = dataclasses.replace(PROFILE, payer=Payer(PayerKind.POSTPAID))
    result = dial("+442071234567", unlimited, balance=D("-4000"))
    assert isinstance(result, Allowed) and result.max_seconds is None and result.deadlines(0.0) is None


def test_inbound_price_is_granted_like_a_dial_and_unrated_dnis_is_free() -> None:
    free = check_dial_in(PROFILE, "+15550100", balance=D("0"), reserved=D("0"), usage=Usage(), at=AT)
    assert free == Allowed(None, None, D("0"))
    priced = check_dial_in(PROFILE, "+440800123456", balance=D("0.04"), reserved=D("0"), usage=Usage(), at=AT)
    assert isinstance(priced, Allowed) and priced.max_seconds == 120
    broke = check_dial_in(PROFILE, "+440800123456", balance=D("0"), reserved=D("0"), usage=Usage(), at=AT)
    assert cause(broke) == "insufficient_funds"


REFUSALS: list[Refusal] = [
    SubscriberLocked(frozenset({LockReason.MANUAL})),
    SubscriberLocked(frozenset({LockReason.CREDIT_LIMIT})),
    InvalidNumber("x" * 500),
    DestinationDenied("9" * 15, "99", "premium rate services of every kind"),
    InternationalDenied("9" * 15),
    HourlyCapReached(1000, 3600),
    CompanyCallLimit(10000),
    SubscriberCallLimit(10000),
    NoRate("9" * 15),
    InsufficientFunds("9" * 15, D("123456.0125"), D("0.0001")),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: r.cause)
def test_every_refusal_fits_one_sms_and_has_a_stable_cause(refusal: Refusal) -> None:
    assert refusal.message.isascii() and len(refusal.message) <= 160
    assert refusal.cause.isidentifier() and refusal.cause.islower()
    with pytest.raises(dataclasses.FrozenInstanceError):
        refusal.cause = "other"  # type: ignore[misc]


def test_causes_are_distinct() -> None:
    causes = {type(r).cause for r in REFUSALS}
    assert len(causes) == len({type(r) for r in REFUSALS})
