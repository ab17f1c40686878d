"""Who may dial what, and how much at once: limits, destination policy (toll-fraud guard), locks.

Each refusal is a small frozen dataclass under :class:`Refusal` with a stable ``cause`` (written to the
CDR, matched by reports: never reworded) and a ``message`` in plain ASCII under 160 characters, fit for
one SMS and for a portal page. The glue dispatches on the type when it needs the details.

- **Concurrency**: legs up at once, per company and per subscriber, counted by the caller; the new leg is
  refused when the count has reached the limit (``None``: no limit). Dial-ins count too.
- **Destinations**: a company's allow prefixes exempt a number from everything below; else the longest
  matching deny prefix (premium, satellite...) refuses it; else a number outside the home country codes
  is refused unless the company may call abroad.
- **Legs per hour**: a sliding window of the subscriber's dial instants on the service's monotonic clock
  (:class:`DialWindow`); the cap counts dials in the last hour, whatever became of them.
- **Locks**: a locked subscriber cannot dial out; dial-in still works. A lock has reasons: a manual lock
  is lifted only by hand, the credit-limit lock only when the company's balance is back above its limit.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar

from bridge.billing.ledger import Payer, PayerKind
from bridge.billing.prefixes import PrefixTable
from bridge.billing.rating import format_money

HOUR = 3600.0


# --- refusals -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Base of every refusal: ``cause`` for the CDR, ``message`` for the subscriber."""

    cause: ClassVar[str] = "refused"

    @property
    def message(self) -> str:
        return "This call is not allowed."


@dataclass(frozen=True)
class SubscriberLocked(Refusal):
    reasons: frozenset[LockReason]
    cause: ClassVar[str] = "subscriber_locked"

    @property
    def message(self) -> str:
        if LockReason.CREDIT_LIMIT in self.reasons and len(self.reasons) == 1:
            return "Outgoing calls are blocked: your company reached its credit limit. Dial-in still works."
        return "Outgoing calls are blocked on your account. Dial-in still works. Ask your administrator."


@dataclass(frozen=True)
class InvalidNumber(Refusal):
    number: str
    cause: ClassVar[str] = "invalid_number"

    @property
    def message(self) -> str:
        return f"{_short(self.number)} is not a valid international number."


@dataclass(frozen=True)
class DestinationDenied(Refusal):
    number: str
    prefix: str
    category: str
    cause: ClassVar[str] = "destination_denied"

    @property
    def message(self) -> str:
        return f"Calls to +{_short(self.number)} ({_short(self.category)}) are not allowed."


@dataclass(frozen=True)
class InternationalDenied(Refusal):
    number: str
    cause: ClassVar[str] = "international_denied"

    @property
    def message(self) -> str:
        return f"International calls (+{_short(self.number)}) are not allowed for your company."


@dataclass(frozen=True)
class HourlyCapReached(Refusal):
    limit: int
    retry_after: int
    """Seconds until the oldest dial of the hour leaves the window."""
    cause: ClassVar[str] = "hourly_leg_cap"

    @property
    def message(self) -> str:
        minutes = max(1, -(-self.retry_after // 60))
        return f"You reached {self.limit} calls in an hour. Try again in {minutes} min."


@dataclass(frozen=True)
class CompanyCallLimit(Refusal):
    limit: int
    cause: ClassVar[str] = "company_call_limit"

    @property
    def message(self) -> str:
        return f"Your company already has {self.limit} calls up, its limit. Try again later."


@dataclass(frozen=True)
class SubscriberCallLimit(Refusal):
    limit: int
    cause: ClassVar[str] = "subscriber_call_limit"

    @property
    def message(self) -> str:
        return f"You already have {self.limit} calls up, your limit. Try again later."


@dataclass(frozen=True)
class NoRate(Refusal):
    number: str
    cause: ClassVar[str] = "no_rate"

    @property
    def message(self) -> str:
        return f"+{_short(self.number)} cannot be called: no rate covers this destination."


@dataclass(frozen=True)
class InsufficientFunds(Refusal):
    number: str
    needed: Decimal
    """The price of the destination's first increment."""
    available: Decimal
    cause: ClassVar[str] = "insufficient_funds"

    @property
    def message(self) -> str:
        return (
            f"Not enough credit to call +{_short(self.number)}: {format_money(self.needed)} needed, "
            f"{format_money(self.available)} left. Please top up."
        )


def _short(text: str, limit: int = 24) -> str:
    """Keep anything we echo short and printable, so a message stays one SMS."""
    clean = "".join(c if c.isascii() and c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


# --- limits ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Limits:
    company_legs: int | None = None
    """Legs of the company up at once (dial-out and dial-in); ``None``: no limit."""
    subscriber_legs: int | None = None
    """Legs up at once in the subscriber's conferences; ``None``: no limit."""
    legs_per_hour: int | None = None
    """Dials a subscriber may start in any 60 minutes (toll-fraud guard); ``None``: no cap."""


@dataclass(frozen=True)
class Usage:
    """Legs up now, counted by the conference service (the leg being checked not included)."""

    company_legs: int = 0
    subscriber_legs: int = 0


def check_concurrency(limits: Limits, usage: Usage, *, subscriber: bool = True) -> Refusal | None:
    """The company limit, then (unless ``subscriber`` is False: a dial-in nobody owns) the subscriber's."""
    if limits.company_legs is not None and usage.company_legs >= limits.company_legs:
        return CompanyCallLimit(limits.company_legs)
    if subscriber and limits.subscriber_legs is not None and usage.subscriber_legs >= limits.subscriber_legs:
        return SubscriberCallLimit(limits.subscriber_legs)
    return None


@dataclass
class DialWindow:
    """One subscriber's dial instants in the last hour (monotonic seconds, oldest first)."""

    span: float = HOUR
    times: deque[float] = field(default_factory=deque)

    def count(self, now: float) -> int:
        while self.times and self.times[0] <= now - self.span:
            self.times.popleft()
        return len(self.times)

    def record(self, now: float) -> None:
        """Call after an allowed dial (checking does not record, so a check may be repeated)."""
        self.count(now)
        self.times.append(now)

    def check(self, now: float, cap: int | None) -> HourlyCapReached | None:
        if cap is None or self.count(now) < cap:
            return None
        leaves_at = self.times[len(self.times) - cap] + self.span
        return HourlyCapReached(cap, max(1, int(-(-(leaves_at - now) // 1))))


# --- destinations ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DenyRule:
    prefix: str
    category: str
    """Shown in the refusal: ``premium``, ``satellite``..."""


#: Satellite and international-network codes (ITU-T E.164 shared codes), denied unless allowed.
DEFAULT_DENY = (
    DenyRule("870", "satellite"),
    DenyRule("881", "satellite"),
    DenyRule("882", "international network"),
    DenyRule("883", "international network"),
)


@dataclass(frozen=True, eq=False)
class DestinationPolicy:
    """The operator's deny list with one company's exemptions, built once per company."""

    home_codes: tuple[str, ...]
    """Country codes that are not international for this operator (``("44",)``, ``("1",)``)."""
    deny: tuple[DenyRule, ...] = DEFAULT_DENY
    allow_international: bool = False
    allow: tuple[str, ...] = ()
    """Company prefixes exempt from the deny list and the international rule."""
    _deny: PrefixTable[DenyRule] = field(init=False, repr=False)
    _allow: PrefixTable[str] = field(init=False, repr=False)
    _home: PrefixTable[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_deny", PrefixTable((r.prefix, r) for r in self.deny))
        object.__setattr__(self, "_allow", _set(self.allow))
        object.__setattr__(self, "_home", _set(self.home_codes))

    def check(self, number_digits: str) -> Refusal | None:
        if self._allow.longest(number_digits) is not None:
            return None
        denied = self._deny.longest(number_digits)
        if denied is not None:
            return DestinationDenied(number_digits, denied[0], denied[1].category)
        if not self.allow_international and self._home.longest(number_digits) is None:
            return InternationalDenied(number_digits)
        return None


def _set(prefixes: Iterable[str]) -> PrefixTable[str]:
    return PrefixTable((p, p) for p in dict.fromkeys(prefixes))


# --- locks ----------------------------------------------------------------------------------------------


class LockReason(enum.StrEnum):
    MANUAL = "manual"
    CREDIT_LIMIT = "credit_limit"


@dataclass(frozen=True)
class LockState:
    """Why a subscriber's outbound calls are blocked; unlocked when there is no reason left."""

    reasons: frozenset[LockReason] = frozenset()

    @property
    def locked(self) -> bool:
        return bool(self.reasons)

    def lock(self, reason: LockReason = LockReason.MANUAL) -> LockState:
        return LockState(self.reasons | {reason})

    def unlock(self, reason: LockReason = LockReason.MANUAL) -> LockState:
        """Lift one reason; a manual unlock leaves a credit-limit lock in place, and the other way round."""
        return LockState(self.reasons - {reason})

    def check_outbound(self) -> SubscriberLocked | None:
        return SubscriberLocked(self.reasons) if self.locked else None


UNLOCKED = LockState()


def credit_limit_reached(payer: Payer, balance: Decimal) -> bool:
    """A postpaid company with a limit whose balance is at or past it: nothing left to spend."""
    floor = payer.floor
    return payer.kind is PayerKind.POSTPAID and floor is not None and balance <= floor


def apply_credit_rule(state: LockState, payer: Payer, balance: Decimal) -> LockState:
    """The auto-lock: lock each subscriber of a postpaid company at its credit limit, unlock when back."""
    if credit_limit_reached(payer, balance):
        return state.lock(LockReason.CREDIT_LIMIT)
    return state.unlock(LockReason.CREDIT_LIMIT)
