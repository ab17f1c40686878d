"""Rate plans and the price of a leg.

A plan is a set of entries, one per destination prefix (E.164 digits, no ``+``); the longest prefix of the
dialled number wins. An entry carries the standard price per minute, a connection fee, the billing
increments (first / next, in seconds) and, optionally, a peak price that applies inside a daily window of
local wall time in the company's zone (``zoneinfo``: the window follows DST, because the instant is
converted to local time before it is compared).

Rules (each stated once, here):

- **Which price**: the instant the leg is rated decides peak or standard, and that price holds for the
  whole leg (no split at the window's edge). The gate rates at dial time and the leg is priced with the
  same :class:`Rate`, so the reservation made before dialling covers the charge.
- **Billed seconds**: 0 seconds bill 0 (no connection fee either: an unanswered leg costs nothing); up
  to ``first`` seconds bill ``first``; beyond, ``first`` plus whole ``next`` increments, rounded up.
- **Rounding**: ``connection_fee + price_per_min * billed / 60`` is computed exactly and rounded once per
  leg, half up (``ROUND_HALF_UP``) to 4 decimals (:data:`MONEY_PLACES`).
- **Inbound legs** are rated by the number the caller dialled (our DNIS) at the entry's inbound price,
  with the same increments and no connection fee.
- **Plan choice**: a company's own plan replaces the default plan as a whole (:func:`plan_for`); entries
  are not merged across plans, so what a company pays is read from one plan.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from bridge.billing import RatePlanError
from bridge.billing.prefixes import PrefixTable, digits

#: A leg's price is rounded to this many places, half up.
MONEY_PLACES = Decimal("0.0001")
ZERO = Decimal(0)
_SIXTY = Decimal(60)


class Direction(enum.StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


@dataclass(frozen=True)
class PeakWindow:
    """``price_per_min`` applies from ``start`` (inclusive) to ``end`` (exclusive), local wall time.
    ``start > end`` wraps midnight (22:00-06:00)."""

    start: dt.time
    end: dt.time
    price_per_min: Decimal

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise RatePlanError("peak window start and end are equal")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise RatePlanError("peak window times are local wall times, without a zone")
        _check_price("peak price", self.price_per_min)

    def covers(self, local: dt.time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True)
class RateEntry:
    """One row of a plan."""

    prefix: str
    description: str
    price_per_min: Decimal
    connection_fee: Decimal = ZERO
    first_increment: int = 60
    next_increment: int = 60
    peak: PeakWindow | None = None
    inbound_price: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.prefix != digits(self.prefix):
            raise RatePlanError(f"prefix must be E.164 digits without '+': {self.prefix!r}")
        if not self.description or self.description != self.description.strip():
            raise RatePlanError(f"description must be non-empty, without surrounding spaces: {self.description!r}")
        _check_price("price_per_min", self.price_per_min)
        _check_price("connection_fee", self.connection_fee)
        _check_price("inbound_price", self.inbound_price)
        for name in ("first_increment", "next_increment"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RatePlanError(f"{name} must be a whole number of seconds >= 1: {value!r}")


def _check_price(name: str, value: Decimal) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise RatePlanError(f"{name} must be a finite, non-negative Decimal: {value!r}")


@dataclass(frozen=True, eq=False)
class RatePlan:
    """A named set of entries with a longest-prefix index. Equal when name and entries are equal."""

    name: str
    entries: tuple[RateEntry, ...]
    _table: PrefixTable[RateEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        object.__setattr__(self, "_table", PrefixTable((e.prefix, e) for e in self.entries))

    def lookup(self, number: str) -> RateEntry | None:
        """The entry with the longest prefix of ``number`` (raises :class:`RatePlanError` if malformed)."""
        found = self._table.longest(digits(number))
        return None if found is None else found[1]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[RateEntry]:
        return iter(self.entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RatePlan):
            return NotImplemented
        return self.name == other.name and set(self.entries) == set(other.entries)

    def __hash__(self) -> int:
        return hash((self.name, frozenset(self.entries)))


@dataclass(frozen=True)
class Rate:
    """The price of one leg, resolved for its direction and instant: what the CDR records."""

    plan: str
    prefix: str
    description: str
    direction: Direction
    price_per_min: Decimal
    connection_fee: Decimal
    first_increment: int
    next_increment: int
    peak: bool = False

    @property
    def free(self) -> bool:
        return self.price_per_min == 0 and self.connection_fee == 0


@dataclass(frozen=True)
class Charge:
    """What a leg of ``seconds`` answered seconds costs at ``rate``."""

    rate: Rate
    seconds: int
    billed_seconds: int
    amount: Decimal
    """Connection fee plus time, rounded half up to 4 decimals; 0 for a 0-second leg."""


def plan_for(company_plan: RatePlan | None, default_plan: RatePlan | None) -> RatePlan | None:
    """The plan a company is rated on: its own if it has one, else the default (whole plans, not merged)."""
    return company_plan if company_plan is not None else default_plan


def rate(
    plan: RatePlan | None,
    number: str,
    at: dt.datetime,
    zone: dt.tzinfo,
    direction: Direction = Direction.OUTBOUND,
) -> Rate | None:
    """The rate of a leg to (or, inbound, via) ``number`` starting at ``at``; ``None`` when nothing covers it.

    ``at`` is an instant: an aware datetime, or a naive one read as UTC (the database's convention).
    ``zone`` is the company's zone; only the peak window is read in it. Raises :class:`RatePlanError`
    when ``number`` is not an E.164 number.
    """
    if plan is None:
        digits(number)  # a malformed number is an error even without a plan
        return None
    entry = plan.lookup(number)
    if entry is None:
        return None
    if direction is Direction.INBOUND:
        return Rate(
            plan.name,
            entry.prefix,
            entry.description,
            direction,
            entry.inbound_price,
            ZERO,
            entry.first_increment,
            entry.next_increment,
        )
    price_per_min, peak = entry.price_per_min, False
    if entry.peak is not None and entry.peak.covers(local_time(at, zone)):
        price_per_min, peak = entry.peak.price_per_min, True
    return Rate(
        plan.name,
        entry.prefix,
        entry.description,
        direction,
        price_per_min,
        entry.connection_fee,
        entry.first_increment,
        entry.next_increment,
        peak,
    )


def local_time(at: dt.datetime, zone: dt.tzinfo) -> dt.time:
    """Wall-clock time of the instant ``at`` in ``zone`` (naive ``at`` is UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(zone).time()


def billed_seconds(rate: Rate, seconds: int) -> int:
    """Seconds billed for ``seconds`` answered: 0, else ``first`` then whole ``next`` increments, up."""
    if seconds < 0:
        raise RatePlanError(f"negative duration: {seconds}")
    if seconds == 0:
        return 0
    if seconds <= rate.first_increment:
        return rate.first_increment
    extra = seconds - rate.first_increment
    steps = -(-extra // rate.next_increment)
    return rate.first_increment + steps * rate.next_increment


def amount_for(rate: Rate, billed: int) -> Decimal:
    """Price of ``billed`` seconds (a value :func:`billed_seconds` returns), rounded per leg."""
    if billed == 0:
        return ZERO.quantize(MONEY_PLACES)
    exact = rate.connection_fee + rate.price_per_min * Decimal(billed) / _SIXTY
    return exact.quantize(MONEY_PLACES, rounding=ROUND_HALF_UP)


def price(rate: Rate, seconds: int) -> Charge:
    """The charge for a leg of ``seconds`` whole answered seconds."""
    billed = billed_seconds(rate, seconds)
    return Charge(rate, seconds, billed, amount_for(rate, billed))


def format_money(value: Decimal) -> str:
    """At least 3 decimals, more when the value has them: ``0.02`` -> ``0.020``, ``0.0125`` -> ``0.0125``."""
    text = format(value.normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(3, '0')}"


def describe(number: str, rate: Rate | None) -> str:
    """One line for the CLI and the portal: ``+442079460000 -> UK London, 0.020/min, 60/60``."""
    shown = "+" + digits(number)
    if rate is None:
        return f"{shown} -> no rate: calls to this number are refused"
    text = (
        f"{shown} -> {rate.description}, {format_money(rate.price_per_min)}/min, "
        f"{rate.first_increment}/{rate.next_increment}"
    )
    if rate.connection_fee:
        text += f", connection {format_money(rate.connection_fee)}"
    if rate.peak:
        text += " (peak)"
    if rate.direction is Direction.INBOUND:
        text += " (inbound)"
    return text
