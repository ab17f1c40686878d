"""Billing wired into the conference service (issue 18): the same fake SIP, media and clock as test_service,
over a real SQLite database, with ``[billing] enabled``."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bridge.billing.rating import RateEntry, RatePlan
from bridge.commands.actions import LaunchConference
from bridge.conference import NotAllowed, accounts
from bridge.conference.accounts import AccountKey
from bridge.config import Config, from_dict
from bridge.db.billing import LedgerMovement
from bridge.db.models import Cdr, Company, Leg, SmsMessage, Subscriber
from bridge.sip.events import LegAnswered
from tests.conference.test_service import ALICE, BOB, COMMON, POOL1, SUB, Rig

# 0.60/min, 1/1: 0.90 pays exactly 90 s; 0.01 pays one second.
PLAN = RatePlan("test", (RateEntry("1555", "US test", Decimal("0.60"), first_increment=1, next_increment=1),))


def billing_config(tmp_path: Path, **billing: object) -> Config:
    return from_dict({
        "node": {"data_dir": str(tmp_path)},
        "dnis": {"common": COMMON, "pool": [POOL1], "digit_timeout_s": 2.0},
        "conference": {"hysteresis_s": 30.0, "callback_retries": 0, "callback_delay_s": 1.0},
        "billing": {"enabled": True, "low_balance_threshold": "0.50", **billing},
    })  # fmt: skip


def seed(factory: sessionmaker[Session], *, prepaid: bool = True, balance: str = "0.90", **company: object) -> None:
    with factory() as s:
        accounts.save_plan(s, PLAN, default=True)
        sub = s.get(Subscriber, 1)
        assert sub is not None
        sub.prepaid = prepaid
        for key, value in company.items():
            setattr(sub.company, key, value)
        s.flush()
        if prepaid and Decimal(balance):
            accounts.top_up(s, subscriber=sub, amount=Decimal(balance), by="test")
        s.commit()


def answer_all(rig: Rig) -> None:
    rig.advance(0.02)
    for leg in rig.sip.dialled:
        rig.event(LegAnswered(leg))


def sms_to(rig: Rig, number: str) -> list[str]:
    with rig.factory() as s:
        return [m.text for m in s.scalars(select(SmsMessage).where(SmsMessage.destination == number))]


def balance(rig: Rig) -> Decimal:
    with rig.factory() as s:
        return accounts.ledger_sum(s, AccountKey(1, 1))


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return billing_config(tmp_path, warn_before_s=60.0)


@pytest.fixture
def rig(config: Config, factory: sessionmaker[Session]) -> Rig:
    return Rig(config, factory)


def test_prepaid_leg_warned_cut_at_zero_priced_by_plan(rig: Rig) -> None:
    seed(rig.factory)
    run_id = rig.service.launch(subscriber_id=1, numbers=[SUB])
    answer_all(rig)
    rig.advance(29.9)
    assert not [p for p in rig.media.plays if p[0] == ("one_minute_left",)]
    rig.advance(0.2)  # 60 s before the 90 s grant ends
    assert [p[0] for p in rig.media.plays].count(("one_minute_left",)) == 1
    rig.advance(59.7)
    assert rig.sip.hung_up == []
    rig.advance(0.2)
    assert [cause for _, cause in rig.sip.hung_up] == ["credit exhausted"]
    assert run_id not in rig.service.conferences  # the subscriber's only leg is gone
    with rig.factory() as s:
        cdr = s.scalars(select(Cdr)).one()
        assert (cdr.cause, cdr.rate_plan, cdr.rate_prefix, cdr.billed_s) == ("credit exhausted", "test", "1555", 90)
        assert cdr.price == Decimal("0.9000")
        charge = s.scalars(select(LedgerMovement).where(LedgerMovement.kind == "charge")).one()
        assert charge.amount == Decimal("-0.9000") and charge.leg_id == cdr.leg_id
        sub = s.get(Subscriber, 1)
        assert sub is not None and Decimal(str(sub.balance)) == Decimal("0")  # the cache follows the ledger
    assert balance(rig) == Decimal("0.0000")
    texts = sms_to(rig, SUB)
    assert any("credit ran out" in t for t in texts)
    rig.service.on_actions([LaunchConference(subscriber_id=1, numbers=(SUB,), ic_id=None)])
    assert any(t.startswith("Conference not started: Not enough credit") for t in sms_to(rig, SUB))
    assert len(rig.sip.dialled) == 1


def test_launch_splits_the_balance_between_the_legs_to_dial(rig: Rig) -> None:
    seed(rig.factory)
    rig.service.launch(subscriber_id=1, numbers=[SUB, ALICE])
    answer_all(rig)
    grants = sorted(g.allowed.max_seconds or 0 for g in rig.service.billing.grants.values())
    assert grants == [45, 45]
    rig.advance(45.1)
    assert [cause for _, cause in rig.sip.hung_up] == ["credit exhausted", "credit exhausted"]
    assert balance(rig) == Decimal("0.0000")


def test_launch_refused_when_the_first_increment_is_not_paid(rig: Rig) -> None:
    seed(rig.factory, balance="0")
    with pytest.raises(NotAllowed, match="Not enough credit"):
        rig.service.launch(subscriber_id=1, numbers=[SUB, ALICE])
    assert rig.sip.dialled == []


def test_number_no_plan_covers_is_refused_before_dialling(rig: Rig) -> None:
    seed(rig.factory, balance="5")
    run_id = rig.service.launch(subscriber_id=1, numbers=[SUB, "+15661230009"])
    rig.advance(0.02)
    assert [leg.called for leg in rig.sip.dialled] == [SUB]
    rows = rig.leg_rows(run_id)
    assert (rows[1].status, rows[1].cause, rows[1].refusal) == ("failed", "no_rate", "no_rate")
    assert any("no rate covers" in t for t in sms_to(rig, SUB))


def test_concurrent_limit_refuses_the_next_dial_with_its_cause(tmp_path: Path, factory: sessionmaker[Session]) -> None:
    rig = Rig(billing_config(tmp_path, subscriber_max_legs=2), factory)
    seed(factory, balance="5")
    run_id = rig.service.launch(subscriber_id=1, numbers=[SUB, ALICE, BOB])
    answer_all(rig)
    assert [leg.called for leg in rig.sip.dialled] == [SUB, ALICE]
    rows = rig.leg_rows(run_id)
    assert rows[2].called == BOB and rows[2].cause == "subscriber_call_limit"
    with factory() as s:
        cdr = s.scalars(select(Cdr).where(Cdr.leg_id == rows[2].id)).one()
        assert cdr.refusal == "subscriber_call_limit" and cdr.price is None
    assert any("You already have 2 calls up" in t for t in sms_to(rig, SUB))


def test_locked_subscriber_cannot_launch(rig: Rig) -> None:
    seed(rig.factory, balance="5")
    with rig.factory() as s:
        sub = s.get(Subscriber, 1)
        assert sub is not None
        sub.lock_reasons = "manual"
        s.commit()
    with pytest.raises(NotAllowed, match="blocked"):
        rig.service.launch(subscriber_id=1, numbers=[SUB])


def test_postpaid_company_cut_at_its_credit_limit_then_locked(rig: Rig) -> None:
    seed(rig.factory, prepaid=False, credit_limit=Decimal("0.30"))
    rig.service.launch(subscriber_id=1, numbers=[SUB])
    answer_all(rig)
    rig.advance(30.1)
    assert [cause for _, cause in rig.sip.hung_up] == ["credit exhausted"]
    with rig.factory() as s:
        assert accounts.ledger_sum(s, AccountKey(1, None)) == Decimal("-0.3000")
        sub = s.get(Subscriber, 1)
        assert sub is not None and sub.lock_reasons == "credit_limit"
        company = s.get(Company, 1)
        assert company is not None
        accounts.top_up(s, company=company, amount=Decimal("1"), by="test")
        s.commit()
        s.refresh(sub)
        assert sub.lock_reasons == ""


def test_low_balance_sms_when_a_leg_crosses_the_threshold(rig: Rig) -> None:
    seed(rig.factory, balance="1.00")
    rig.service.launch(subscriber_id=1, numbers=[SUB])
    answer_all(rig)
    rig.advance(60.0)
    rig.service.end(next(iter(rig.service.conferences)))
    assert balance(rig) == Decimal("0.4000")
    assert any(t.startswith("Your balance is low: 0.400 left") for t in sms_to(rig, SUB))


def test_balance_set_by_provisioning_becomes_an_adjustment(rig: Rig) -> None:
    seed(rig.factory, balance="1.00")
    with rig.factory() as s:
        sub = s.get(Subscriber, 1)
        assert sub is not None
        sub.balance = 3.5  # what the CRM / portal subscriber form does
        s.commit()
        assert accounts.balance(s, AccountKey(1, 1)) == Decimal("3.5000")
        s.commit()
        kinds = [m.kind for m in s.scalars(select(LedgerMovement).order_by(LedgerMovement.id))]
    assert kinds == ["top_up", "adjustment"]


def test_disabled_billing_keeps_todays_rule(tmp_path: Path, factory: sessionmaker[Session]) -> None:
    rig = Rig(billing_config(tmp_path, enabled=False), factory)
    rig.service.launch(subscriber_id=1, numbers=[SUB, "+15661230009"])
    answer_all(rig)
    assert len(rig.sip.dialled) == 2 and rig.service.billing.grants == {}
    with factory() as s:
        assert all(leg.price is None for leg in s.scalars(select(Leg)))


def test_dial_in_counts_against_the_limit_and_is_refused_past_it(
    tmp_path: Path, factory: sessionmaker[Session]
) -> None:
    rig = Rig(billing_config(tmp_path, subscriber_max_legs=2), factory)
    seed(factory, balance="5")
    run_id = rig.service.launch(subscriber_id=1, numbers=[SUB], ic_id=1)
    answer_all(rig)
    rig.dial_in(COMMON, "+15559990000", "222222")  # the second leg: joins, and is held by billing
    assert len(rig.service.billing.grants) == 2
    rig.dial_in(COMMON, "+15559990001", "222222")  # the third: refused at the door
    rig.advance(5.0)  # after the goodbye prompt
    rows = rig.leg_rows(run_id)
    assert [r.calling for r in rows if r.direction == "in"] == ["+15559990000"]
    with factory() as s:
        refused = s.scalars(select(Cdr).where(Cdr.cli == "+15559990001")).one()
        assert refused.cause == "subscriber_call_limit"


def test_legs_left_open_by_a_crash_are_priced_at_recovery(rig: Rig) -> None:
    seed(rig.factory, balance="5")
    rig.service.launch(subscriber_id=1, numbers=[SUB])
    answer_all(rig)
    after_crash = Rig(rig.service.config, rig.factory)  # a new engine over the same database
    assert after_crash.service.records.recover() == 1
    with rig.factory() as s:
        cdr = s.scalars(select(Cdr)).one()
        assert cdr.cause.startswith("system restart") and cdr.rate_prefix == "1555" and cdr.billed_s
        assert cdr.price == Decimal("0.01") * cdr.billed_s
        charge = s.scalars(select(LedgerMovement).where(LedgerMovement.kind == "charge")).one()
        assert charge.amount == -cdr.price and charge.leg_id == cdr.leg_id


def test_toll_fraud_guard_refuses_abroad_satellite_and_the_hourly_cap(
    tmp_path: Path, factory: sessionmaker[Session]
) -> None:
    rig = Rig(billing_config(tmp_path, legs_per_hour=2), factory)
    seed(factory, balance="5")
    run_id = rig.service.launch(subscriber_id=1, numbers=[SUB, "+442079460000", "+881612345678", ALICE, BOB])
    answer_all(rig)
    causes = {r.called: r.refusal for r in rig.leg_rows(run_id)}
    assert causes == {
        SUB: "", "+442079460000": "international_denied", "+881612345678": "destination_denied",
        ALICE: "", BOB: "hourly_leg_cap",
    }  # fmt: skip
    assert [leg.called for leg in rig.sip.dialled] == [SUB, ALICE]


def test_speed_dial_caller_is_held_by_billing(rig: Rig) -> None:
    seed(rig.factory, balance="5")
    rig.dial_in(POOL1, SUB, "111111")  # the subscriber launches IC1 by calling its number
    (run_id,) = rig.service.conferences
    inbound = [r for r in rig.leg_rows(run_id) if r.direction == "in"]
    assert len(inbound) == 1 and inbound[0].id in rig.service.billing.grants
