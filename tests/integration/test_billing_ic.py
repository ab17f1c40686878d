"""Billing end to end (issue 18): the real appliance (``bridge run``) with ``[billing]`` on, the node SMSC
simulator and SIPp phones behind the trunk.

Time is scaled by the rate, not by sleeping: 6.00/min in 1/1 increments is 0.10 a second, so a balance of
1.20 pays 6 s for each of the IC's two legs (the launch splits it, ``share``), and ``warn_before_s = 3``.
The tests wait for events (BYE, CDR rows, SMS); their timeouts only guard against hangs.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.billing.rating import RateEntry, RatePlan
from bridge.conference import accounts
from bridge.db.models import Cdr, Leg, Subscriber
from tests.integration.ic_harness import SUB, Appliance, Phones, free_port, wait_for
from tests.integration.smpp_harness import Smsc

pytestmark = pytest.mark.integration

ALICE, BOB = "+15551230002", "+15551230003"
PLAN = RatePlan("default", (RateEntry("1555", "US test", Decimal("6.00"), first_increment=1, next_increment=1),))


def billing_section(**extra: object) -> str:
    lines = ["[billing]", "enabled = true", "warn_before_s = 3.0", 'low_balance_threshold = "0.50"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[object]:
    started: list[tuple[Smsc, Phones, Appliance]] = []

    def make(balance: str, **billing: object) -> tuple[Smsc, Phones, Appliance]:
        smsc = Smsc(tmp_path)
        smsc.start()
        phones = Phones(tmp_path)
        bridge = Appliance(
            tmp_path, trunk_port=phones.port, smpp_port=smsc.port, feed_port=free_port(),
            conference={"callback_retries": 0}, extra=billing_section(**billing),
        )  # fmt: skip
        started.append((smsc, phones, bridge))
        bridge.seed()
        with bridge.sessions() as s:
            accounts.save_plan(s, PLAN, default=True)
            sub = s.scalars(select(Subscriber)).one()
            sub.prepaid = True
            accounts.top_up(s, subscriber=sub, amount=Decimal(balance), by="test")
            s.commit()
        bridge.start()
        wait_for(lambda: smsc.bound() >= 1, 20, "the bridge bound to the SMSC")
        for nick, number in (("alice", ALICE), ("bob", BOB)):
            smsc.mo(f"UC {nick} {number.lstrip('+1')} {nick.title()}.Test", source=SUB)
        return smsc, phones, bridge

    yield make
    for smsc, phones, bridge in started:
        bridge.stop()
        phones.stop()
        smsc.stop()


def cdrs(bridge: Appliance) -> list[Cdr]:
    with bridge.sessions() as s:
        return list(s.scalars(select(Cdr).order_by(Cdr.leg_id)))


def test_prepaid_ic_warned_cut_at_zero_priced_then_refused(make_rig: object) -> None:
    smsc, phones, bridge = make_rig("1.20")  # type: ignore[operator]
    smsc.mo("GC team alice", source=SUB)
    smsc.mo("IC team", source=SUB)
    wait_for(lambda: len(phones.invites()) >= 2, 20, "two INVITEs")
    records = wait_for(lambda: len(cdrs(bridge)) == 2 and cdrs(bridge), 60, "both legs cut and recorded")
    assert {c.destination for c in records} == {SUB, ALICE}
    for cdr in records:
        assert (cdr.cause, cdr.rate_plan, cdr.rate_prefix, cdr.billed_s) == ("credit exhausted", "default", "1555", 6)
        assert cdr.price == Decimal("0.6000")  # 6 s x 0.10/s, exactly the plan's price
    log = bridge.logs()
    assert log.count("warned: 3 s of credit left") == 2 and log.count("cut: credit exhausted") == 2
    with bridge.sessions() as s:
        assert accounts.ledger_sum(s, accounts.AccountKey(1, 1)) == Decimal("0.0000")
        sub = s.scalars(select(Subscriber)).one()
        assert Decimal(str(sub.balance)).quantize(Decimal("0.01")) == Decimal("0.00")
    wait_for(lambda: any("credit ran out" in t for t in smsc.messages(to=SUB)), 20, "the cut SMS")
    wait_for(lambda: not bridge.conferences(), 20, "the conference to end (its subscriber was cut)")

    invites = len(phones.invites())
    smsc.mo("IC team", source=SUB)
    wait_for(
        lambda: any(t.startswith("Conference not started: Not enough credit") for t in smsc.messages(to=SUB)),
        20, "the refusal SMS",
    )  # fmt: skip
    assert len(phones.invites()) == invites  # nothing was dialled


def test_concurrent_limit_refuses_the_next_dial_with_its_cause(make_rig: object) -> None:
    smsc, phones, bridge = make_rig("100", subscriber_max_legs=2)  # type: ignore[operator]
    smsc.mo("GC team alice bob", source=SUB)
    smsc.mo("IC team", source=SUB)
    wait_for(lambda: len(phones.invites()) >= 2, 20, "two INVITEs")

    def refused() -> Leg | None:
        with bridge.sessions() as s:
            return s.scalars(select(Leg).where(Leg.refusal != "")).first()

    leg = wait_for(refused, 20, "the third leg refused")
    assert (leg.called, leg.status, leg.cause, leg.refusal) == (
        BOB,
        "failed",
        "subscriber_call_limit",
        "subscriber_call_limit",
    )
    assert sorted(i["to"].lstrip("+") for i in phones.invites()) == sorted(n.lstrip("+") for n in (SUB, ALICE))
    cdr = wait_for(lambda: [c for c in cdrs(bridge) if c.leg_id == leg.id], 20, "its CDR")[0]
    assert cdr.refusal == "subscriber_call_limit" and cdr.price is None
    wait_for(lambda: any("You already have 2 calls up" in t for t in smsc.messages(to=SUB)), 20, "the limit SMS")
