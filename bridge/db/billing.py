"""Billing tables (issue 18): rate plans and their entries, the ledger, destination rules.

Money is ``Numeric(14, 4)`` (the core rounds every leg to 4 decimals); prices per minute keep 6 places so
a plan imported from CSV exports unchanged. The ledger is the truth for every balance: a prepaid
subscriber's account is its rows with ``subscriber_id``; a postpaid company's account is the rows with its
``company_id`` and no subscriber (``Subscriber.balance`` is a cache, see there).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, Numeric, String, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bridge.db.base import Base, utcnow

PRICE = Numeric(14, 6)
MONEY = Numeric(14, 4)


class RatePlanRow(Base):
    """A named plan; exactly one may be the default (companies without their own plan use it)."""

    __tablename__ = "rate_plan"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    entries: Mapped[list[RateEntryRow]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", order_by="RateEntryRow.prefix"
    )


class RateEntryRow(Base):
    """One destination prefix of a plan (:class:`bridge.billing.rating.RateEntry`)."""

    __tablename__ = "rate_entry"
    __table_args__ = (UniqueConstraint("plan_id", "prefix"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("rate_plan.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(String(120))
    price_per_min: Mapped[Decimal] = mapped_column(PRICE)
    connection_fee: Mapped[Decimal] = mapped_column(PRICE, default=Decimal(0))
    first_increment: Mapped[int] = mapped_column(Integer, default=60)
    next_increment: Mapped[int] = mapped_column(Integer, default=60)
    peak_price: Mapped[Decimal | None] = mapped_column(PRICE, nullable=True)
    peak_start: Mapped[dt.time | None] = mapped_column(Time, nullable=True)
    peak_end: Mapped[dt.time | None] = mapped_column(Time, nullable=True)
    inbound_price: Mapped[Decimal] = mapped_column(PRICE, default=Decimal(0))

    plan: Mapped[RatePlanRow] = relationship(back_populates="entries")


class LedgerMovement(Base):
    """One movement (:class:`bridge.billing.ledger.Movement`); ``amount`` is signed (charges < 0)."""

    __tablename__ = "ledger_movement"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id"), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscriber.id"), nullable=True, index=True)
    """The prepaid subscriber whose account this is; NULL: the company's (postpaid) account."""
    kind: Mapped[str] = mapped_column(String(20))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    reference: Mapped[str] = mapped_column(String(200), default="")
    leg_id: Mapped[int | None] = mapped_column(ForeignKey("leg.id"), nullable=True, index=True)
    by: Mapped[str] = mapped_column(String(120), default="")
    """Who recorded it: ``engine`` for charges, the login or ``cli`` for top-ups."""


class DestinationRule(Base):
    """A deny (or, per company, allow) prefix of the toll-fraud guard; ``company_id`` NULL: operator-wide."""

    __tablename__ = "destination_rule"
    __table_args__ = (UniqueConstraint("company_id", "prefix"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("company.id"), nullable=True, index=True)
    prefix: Mapped[str] = mapped_column(String(20))
    category: Mapped[str] = mapped_column(String(40), default="")
    allow: Mapped[bool] = mapped_column(Boolean, default=False)
