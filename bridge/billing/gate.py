"""The two calls the conference service makes: :func:`check_dial` before every dial (and
:func:`check_dial_in` when a call comes in), and :func:`settle_leg` when a leg ends.

Wiring, in the service (sketch)::

    result = check_dial(profile, number, balance=..., reserved=..., usage=..., lock=..., window=...,
                        at=utcnow(), now=loop.time(), share=members_still_to_dial)
    if isinstance(result, Refusal):
        refuse(cause=result.cause, sms=result.message)         # CDR cause, SMS / portal text
    else:
        window.record(loop.time()); dial(...)
        # on answer: d = result.deadlines(loop.time()); timers at d.warn_at (prompt) and d.cut_at (hang up)
    ...
    s = settle_leg(profile.payer, result, duration, balance=..., at=utcnow(), reference=f"leg {leg.id}")
    store(s.movement); cdr(rate=s.charge.rate, billed=s.charge.billed_seconds, price=s.charge.amount)
    if s.low_balance: sms(...);  if s.credit_limit_reached: lock the company's subscribers

The service keeps, per paying account, the ``reservation`` of each of its legs that is up and passes their
sum as ``reserved``; it drops a leg's reservation when the leg is settled.

Order of the checks (the first refusal wins): lock, number, destination policy, legs per hour, company
then subscriber concurrency, rate, money. Cheap checks that say most about the caller come first.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal

from bridge.billing import RatePlanError
from bridge.billing.ledger import Deadlines, Movement, MovementKind, Payer, crossed_below, deadlines, max_duration
from bridge.billing.policy import (
    DestinationPolicy,
    DialWindow,
    InsufficientFunds,
    InvalidNumber,
    Limits,
    LockState,
    NoRate,
    Refusal,
    Usage,
    check_concurrency,
    credit_limit_reached,
)
from bridge.billing.prefixes import digits
from bridge.billing.rating import ZERO, Charge, Direction, Rate, RatePlan, amount_for, price, rate


@dataclass(frozen=True, kw_only=True)
class Profile:
    """What billing knows about a subscriber's company, built by the service from the database."""

    plan: RatePlan | None
    """The plan in force (:func:`bridge.billing.rating.plan_for`); ``None``: every dial is refused."""
    payer: Payer
    """Who pays the subscriber's legs: the subscriber (prepaid) or the company (postpaid)."""
    zone: dt.tzinfo
    """The company's zone (``ZoneInfo(company.timezone)``): peak windows are read in it."""
    limits: Limits
    destinations: DestinationPolicy


@dataclass(frozen=True)
class Allowed:
    """Dial it. Keep this object with the leg: it is what :func:`settle_leg` prices the leg with."""

    rate: Rate | None
    """``None`` only for a dial-in no plan covers (free)."""
    max_seconds: int | None
    """Cut the leg after this many answered seconds; ``None``: money sets no limit."""
    reservation: Decimal
    """The price of ``max_seconds`` (0 when unlimited): add it to the account's ``reserved`` while up."""

    def deadlines(self, answered_at: float) -> Deadlines | None:
        """Warning and cut instants on the service's clock, or ``None`` when the leg is not cut."""
        return deadlines(answered_at, self.max_seconds)


@dataclass(frozen=True)
class Settlement:
    charge: Charge | None
    """Rate, billed seconds and price for the CDR; ``None`` for an unrated (free) dial-in."""
    movement: Movement | None
    """The charge to store in the ledger; ``None`` when nothing is owed."""
    balance: Decimal
    """The balance after the movement."""
    uncollected: Decimal
    """Price the floor kept us from charging (a caller passed too small a ``reserved``): log it."""
    low_balance: bool
    """The balance fell through the low-balance threshold with this leg: send the SMS."""
    credit_limit_reached: bool
    """A postpaid company is at its credit limit: apply the auto-lock to its subscribers."""


def check_dial(
    profile: Profile,
    number: str,
    *,
    balance: Decimal,
    reserved: Decimal,
    usage: Usage,
    lock: LockState,
    window: DialWindow,
    at: dt.datetime,
    now: float,
    share: int = 1,
) -> Allowed | Refusal:
    """May the subscriber dial ``number`` (E.164) now, and for how long?

    ``balance`` is the paying account's (ledger sum), ``reserved`` the sum of the reservations of its legs
    up, ``usage`` the legs up now, ``window`` the subscriber's dial window (record the dial on ``Allowed``),
    ``at`` the wall-clock instant (rates peak/off-peak), ``now`` the monotonic clock (the hourly window),
    ``share`` how many legs are to split what is left (:func:`bridge.billing.ledger.max_duration`).
    """
    locked = lock.check_outbound()
    if locked is not None:
        return locked
    try:
        number_digits = digits(number)
    except RatePlanError:
        return InvalidNumber(number)
    refusal = (
        profile.destinations.check(number_digits)
        or window.check(now, profile.limits.legs_per_hour)
        or check_concurrency(profile.limits, usage)
    )
    if refusal is not None:
        return refusal
    found = rate(profile.plan, number_digits, at, profile.zone)
    if found is None:
        return NoRate(number_digits)
    return _grant(profile.payer, found, number_digits, balance, reserved, share)


def check_dial_in(
    profile: Profile,
    dnis: str,
    *,
    balance: Decimal,
    reserved: Decimal,
    usage: Usage,
    at: dt.datetime,
    owned: bool = True,
) -> Allowed | Refusal:
    """May a call to our number ``dnis`` join? Locks, destination policy and the hourly cap do not apply.

    Concurrency does (the subscriber's limit only when ``owned``: the call joins a subscriber's IC). A DNIS
    the plan does not cover, or a zero inbound price, is free; a priced one is granted like a dial.
    """
    refusal = check_concurrency(profile.limits, usage, subscriber=owned)
    if refusal is not None:
        return refusal
    try:
        found = rate(profile.plan, dnis, at, profile.zone, Direction.INBOUND)
    except RatePlanError:
        found = None
    if found is None:
        return Allowed(None, None, ZERO)
    return _grant(profile.payer, found, digits(dnis), balance, reserved, 1)


def _grant(
    payer: Payer, found: Rate, number: str, balance: Decimal, reserved: Decimal, share: int
) -> Allowed | Refusal:
    spendable = payer.spendable(balance)
    seconds = max_duration(spendable, found, reserved, share)
    if seconds == 0:
        left = max(ZERO, (spendable or ZERO) - reserved)
        return InsufficientFunds(number, amount_for(found, found.first_increment), left)
    return Allowed(found, seconds, ZERO if seconds is None else amount_for(found, seconds))


def answered_seconds(duration: float) -> int:
    """Whole seconds of a leg measured as ``duration`` seconds: rounded to the millisecond, then up
    (a timer that fires a few microseconds late does not bill another increment)."""
    if not math.isfinite(duration) or duration < 0:
        raise RatePlanError(f"not a duration: {duration!r}")
    return math.ceil(round(duration, 3))


def settle_leg(
    payer: Payer,
    allowed: Allowed,
    duration: float,
    *,
    balance: Decimal,
    at: dt.datetime,
    reference: str,
    low_balance_threshold: Decimal | None = None,
) -> Settlement:
    """Price a leg that has ended (``duration``: answered seconds, 0 if never answered) at the rate it was
    allowed with, never past its grant, and the ledger charge for it (capped at the payer's floor)."""
    if allowed.rate is None:
        return Settlement(None, None, balance, ZERO, False, credit_limit_reached(payer, balance))
    seconds = answered_seconds(duration)
    if allowed.max_seconds is not None:
        seconds = min(seconds, allowed.max_seconds)
    charge = price(allowed.rate, seconds)
    owed = charge.amount
    spendable = payer.spendable(balance)
    collected = owed if spendable is None else min(owed, spendable)
    move = None
    after = balance
    if collected > 0:
        move = Movement(MovementKind.CHARGE, -collected, at, reference)
        after = balance - collected
    return Settlement(
        charge,
        move,
        after,
        owed - collected,
        crossed_below(balance, after, low_balance_threshold),
        credit_limit_reached(payer, after),
    )
