"""The ledger's database side (bridge.conference.accounts): for any sequence of top-ups and leg charges, the
stored movements add up to the cached ``Subscriber.balance`` and a prepaid balance never goes below zero."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from bridge.billing.gate import Allowed, settle_leg
from bridge.billing.ledger import PREPAID
from bridge.billing.rating import Direction, Rate
from bridge.conference import accounts
from bridge.db.models import Base, Company, Subscriber

RATE = Rate("p", "1555", "US", Direction.OUTBOUND, Decimal("0.60"), Decimal("0.05"), 1, 1)
AT = dt.datetime(2026, 11, 22, 12, 0)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("top_up"), st.decimals(min_value="0.0001", max_value="5", places=4)),
        st.tuples(st.just("leg"), st.floats(min_value=0, max_value=600, allow_nan=False)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(steps)
def test_ledger_sum_is_the_cached_balance_and_never_negative(sequence: list[tuple[str, object]]) -> None:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        sub = Subscriber(company=Company(name="Co"), name="Sam", mobile="+15551230001", prepaid=True)
        s.add(sub)
        s.flush()
        key = accounts.AccountKey(sub.company_id, sub.id)
        for kind, value in sequence:
            if kind == "top_up":
                assert isinstance(value, Decimal)
                accounts.top_up(s, subscriber=sub, amount=value, by="test")
            else:
                assert isinstance(value, float)
                balance = accounts.balance(s, key)
                result = settle_leg(PREPAID, Allowed(RATE, None, Decimal(0)), value, balance=balance, at=AT,
                                    reference="leg")  # fmt: skip
                if result.movement is not None:
                    accounts.record(s, PREPAID, key, result.movement, by="engine")
            total = accounts.ledger_sum(s, key)
            assert total >= 0
            assert Decimal(str(sub.balance or 0)).quantize(Decimal("0.0001")) == total
    engine.dispose()
