"""Balances as a ledger of movements, and what a balance lets a leg do.

A balance is never stored on its own: it is the sum of the account's movements (top-ups, refunds and
adjustments in, charges out), so a statement always adds up. The *floor* is how low the balance may go:
0 for a prepaid subscriber, ``-credit_limit`` for a postpaid company (no floor for a postpaid company
without a limit). Every movement is checked against it, so the ledger cannot pass the floor.

Before a dial, ``spendable - reserved`` is what a new leg may use: ``reserved`` is what the account's legs
already up have been granted (each grant reserves the price of its maximum duration; pass the sum of the
``reservation`` of every leg of this account that is up, in this conference and in its others). The new
leg's maximum duration is the longest it can run, in whole billing increments, without its price passing
that amount; the leg is warned a minute before and cut at it.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

from bridge.billing import LedgerError
from bridge.billing.rating import MONEY_PLACES, ZERO, Rate, amount_for

#: Seconds of warning before a leg is cut (the spoken "one minute left").
WARNING_SECONDS = 60
_SIXTY = Decimal(60)
_HALF_UNIT = MONEY_PLACES / 2


class PayerKind(enum.StrEnum):
    PREPAID = "prepaid"
    POSTPAID = "postpaid"


class MovementKind(enum.StrEnum):
    TOP_UP = "top_up"
    CHARGE = "charge"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True)
class Payer:
    """Who pays and how: a prepaid subscriber, or a postpaid company with an optional credit limit."""

    kind: PayerKind
    credit_limit: Decimal | None = None
    """Postpaid only: how far below zero the balance may go; ``None`` = no limit."""

    def __post_init__(self) -> None:
        if self.kind is PayerKind.PREPAID and self.credit_limit is not None:
            raise LedgerError("a prepaid payer has no credit limit")
        if self.credit_limit is not None and (not self.credit_limit.is_finite() or self.credit_limit < 0):
            raise LedgerError(f"credit limit must be a non-negative amount: {self.credit_limit}")

    @property
    def floor(self) -> Decimal | None:
        """The lowest balance allowed; ``None`` when there is none (postpaid without a limit)."""
        if self.kind is PayerKind.PREPAID:
            return ZERO
        return None if self.credit_limit is None else -self.credit_limit

    def spendable(self, balance: Decimal) -> Decimal | None:
        """Money the payer may still spend (``None``: unlimited)."""
        floor = self.floor
        return None if floor is None else max(ZERO, balance - floor)


PREPAID = Payer(PayerKind.PREPAID)


@dataclass(frozen=True)
class Movement:
    """One line of the ledger. ``amount`` is signed: in (top-up, refund) > 0, out (charge) < 0."""

    kind: MovementKind
    amount: Decimal
    at: dt.datetime
    reference: str = ""
    """What it is for: a leg's id for a charge, who and why for a top-up or an adjustment."""


def movement(kind: MovementKind, amount: Decimal, at: dt.datetime, reference: str = "") -> Movement:
    """A movement from a positive ``amount`` (signed by kind), or a signed one for an adjustment."""
    _check_amount(amount)
    if kind is MovementKind.ADJUSTMENT:
        if amount == 0:
            raise LedgerError("an adjustment of 0 is not a movement")
        return Movement(kind, amount, at, reference)
    if amount <= 0:
        raise LedgerError(f"a {kind.value} takes a positive amount: {amount}")
    return Movement(kind, -amount if kind is MovementKind.CHARGE else amount, at, reference)


def _check_amount(amount: Decimal) -> None:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise LedgerError(f"amounts are finite Decimals: {amount!r}")
    if amount != amount.quantize(MONEY_PLACES):
        raise LedgerError(f"amounts have at most 4 decimals: {amount}")


def check_movement(payer: Payer, balance: Decimal, move: Movement) -> Decimal:
    """The balance after ``move``; raises :class:`LedgerError` when it breaks a rule (sign, floor)."""
    _check_amount(move.amount)
    positive = move.kind in (MovementKind.TOP_UP, MovementKind.REFUND)
    if (positive and move.amount <= 0) or (move.kind is MovementKind.CHARGE and move.amount >= 0):
        raise LedgerError(f"a {move.kind.value} of {move.amount} has the wrong sign")
    after = balance + move.amount
    floor = payer.floor
    if move.amount < 0 and floor is not None and after < floor:
        raise LedgerError(f"{move.kind.value} of {-move.amount} takes the balance {balance} below {floor}")
    return after


@dataclass
class Ledger:
    """An account's movements in memory; ``balance`` is their sum, kept as they are recorded."""

    payer: Payer
    movements: list[Movement] = field(default_factory=list)
    balance: Decimal = field(init=False, default=ZERO)

    def __post_init__(self) -> None:
        recorded, self.movements = self.movements, []
        for move in recorded:
            self.record(move)

    def record(self, move: Movement) -> Decimal:
        """Append ``move`` after checking it; returns the new balance."""
        self.balance = check_movement(self.payer, self.balance, move)
        self.movements.append(move)
        return self.balance

    @property
    def spendable(self) -> Decimal | None:
        return self.payer.spendable(self.balance)


def max_duration(spendable: Decimal | None, rate: Rate, reserved: Decimal = ZERO, share: int = 1) -> int | None:
    """The longest a leg at ``rate`` may run, in seconds, on its part of ``spendable - reserved``.

    ``share`` is how many legs are to split what is left, this one included: at an IC launch dialling n
    members pass n for the first, n - 1 for the next..., so equal rates get equal time (cut together); 1
    gives this leg all that is left. A leg always gets at least its first increment when what is left pays
    it. ``None`` means money sets no limit (an unlimited payer, or a free rate). 0 means the money cannot
    pay the first increment: the leg must not be dialled (:func:`can_start`). Otherwise the result is
    ``first + n * next``, the largest such duration whose rounded price fits.
    """
    if share < 1:
        raise LedgerError(f"share must be >= 1: {share}")
    if spendable is None or rate.free:
        return None
    left = spendable - reserved
    first = amount_for(rate, rate.first_increment)
    if left < first:
        return 0
    budget = max(first, (left / share).quantize(MONEY_PLACES, rounding=ROUND_DOWN))
    if rate.price_per_min == 0:
        return None  # the connection fee is paid and time is free
    # A rounded price is <= budget exactly when the exact price is < budget + half a unit (half up), so
    # this estimate is the answer give or take one step of Decimal division; the loops settle it with
    # the function that prices the leg, so the grant and the charge cannot disagree.
    per_step = rate.price_per_min * rate.next_increment / _SIXTY
    exact_first = rate.connection_fee + rate.price_per_min * rate.first_increment / _SIXTY
    steps = max(0, int((budget + _HALF_UNIT - exact_first) / per_step))
    while steps > 0 and amount_for(rate, rate.first_increment + steps * rate.next_increment) > budget:
        steps -= 1
    while amount_for(rate, rate.first_increment + (steps + 1) * rate.next_increment) <= budget:
        steps += 1
    return rate.first_increment + steps * rate.next_increment


def can_start(spendable: Decimal | None, rate: Rate, reserved: Decimal = ZERO) -> bool:
    """Whether what is left (``spendable - reserved``) pays at least the first increment of ``rate``."""
    return max_duration(spendable, rate, reserved) != 0


@dataclass(frozen=True)
class Deadlines:
    """When to play the warning and when to cut, on the caller's clock (``loop.time()``)."""

    warn_at: float
    cut_at: float


def deadlines(answered_at: float, max_seconds: int | None, warning: int = WARNING_SECONDS) -> Deadlines | None:
    """The warning (``warning`` seconds before the cut, or at answer for a shorter grant) and the cut."""
    if max_seconds is None:
        return None
    cut_at = answered_at + max_seconds
    return Deadlines(max(answered_at, cut_at - warning), cut_at)


def crossed_below(before: Decimal, after: Decimal, threshold: Decimal | None) -> bool:
    """True once per fall through ``threshold``: the low-balance SMS. A top-up above it re-arms it."""
    return threshold is not None and before > threshold >= after
