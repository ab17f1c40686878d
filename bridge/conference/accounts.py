"""Billing's database side: rate plans, ledgers, locks, limits and statements (issue 18).

The pure rules are in :mod:`bridge.billing`; this module only reads and writes their rows, for the
conference service (:mod:`bridge.conference.billing`), the CLI (``bridge rates``, ``bridge topup``,
``bridge lock``) and the portal's billing pages alike, so each rule is applied the same way from every
front door. Functions take a :class:`~sqlalchemy.orm.Session` and flush; the caller commits.

**Balances.** The ledger is the truth: an account's balance is the sum of its ``ledger_movement`` rows (a
prepaid subscriber: rows with its ``subscriber_id``; a postpaid company: its rows without a subscriber).
``Subscriber.balance`` is kept as a cache of that sum, written in the same transaction as every movement,
because provisioning, the CRM and the REST API read (and may set) it. A value set from outside is turned
into an adjustment movement the next time billing reads the account (:func:`balance`), so the ledger
always adds up to what the subscriber was told.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridge.billing.gate import Profile
from bridge.billing.ledger import PREPAID, Movement, MovementKind, Payer, PayerKind, check_movement, movement
from bridge.billing.policy import DEFAULT_DENY, DenyRule, DestinationPolicy, Limits, LockReason, LockState
from bridge.billing.rating import MONEY_PLACES, ZERO, PeakWindow, RateEntry, RatePlan
from bridge.cdr.csvformat import zone
from bridge.configschema import BillingConfig, Config
from bridge.db.billing import DestinationRule, LedgerMovement, RateEntryRow, RatePlanRow
from bridge.db.models import Cdr, Company, ConferenceRun, Subscriber, utcnow

DEFAULT_PLAN_NAME = "default"


@dataclass(frozen=True)
class AccountKey:
    """Whose ledger: a prepaid subscriber's (``subscriber_id``) or a postpaid company's (``None``)."""

    company_id: int
    subscriber_id: int | None


# --- plans ----------------------------------------------------------------------------------------------


def plan_from_row(row: RatePlanRow) -> RatePlan:
    entries = []
    for e in row.entries:
        peak = None
        if e.peak_price is not None and e.peak_start is not None and e.peak_end is not None:
            peak = PeakWindow(e.peak_start, e.peak_end, Decimal(e.peak_price))
        entries.append(
            RateEntry(
                e.prefix, e.description, Decimal(e.price_per_min), Decimal(e.connection_fee), e.first_increment,
                e.next_increment, peak, Decimal(e.inbound_price),
            )  # fmt: skip
        )
    return RatePlan(row.name, tuple(entries))


def save_plan(session: Session, plan: RatePlan, *, company_id: int | None = None, default: bool = False) -> RatePlanRow:
    """Store ``plan`` under its name, replacing the entries of a plan of that name; make it the default plan
    (``default``) or the plan of ``company_id``. All or nothing with the caller's transaction."""
    row = session.scalars(select(RatePlanRow).where(RatePlanRow.name == plan.name)).one_or_none()
    if row is None:
        row = RatePlanRow(name=plan.name)
        session.add(row)
    row.entries.clear()
    session.flush()
    for e in plan.entries:
        row.entries.append(
            RateEntryRow(
                prefix=e.prefix, description=e.description, price_per_min=e.price_per_min,
                connection_fee=e.connection_fee, first_increment=e.first_increment, next_increment=e.next_increment,
                peak_price=e.peak.price_per_min if e.peak else None, peak_start=e.peak.start if e.peak else None,
                peak_end=e.peak.end if e.peak else None, inbound_price=e.inbound_price,
            )  # fmt: skip
        )
    row.created_at = utcnow()  # the service's plan cache is keyed by (id, created_at)
    if default:
        for other in session.scalars(select(RatePlanRow).where(RatePlanRow.is_default.is_(True))):
            other.is_default = False
        row.is_default = True
    if company_id is not None:
        company = session.get(Company, company_id)
        if company is None:
            raise LookupError(f"no company {company_id}")
        company.rate_plan_id = row.id
    session.flush()
    return row


def plan_row_for(session: Session, company: Company | None) -> RatePlanRow | None:
    """The company's own plan, else the default plan (whole plans: :func:`bridge.billing.rating.plan_for`)."""
    if company is not None and company.rate_plan_id is not None:
        row = session.get(RatePlanRow, company.rate_plan_id)
        if row is not None:
            return row
    return session.scalars(select(RatePlanRow).where(RatePlanRow.is_default.is_(True))).first()


# --- ledgers --------------------------------------------------------------------------------------------


def payer_for(company: Company, subscriber: Subscriber | None) -> tuple[Payer, AccountKey]:
    if subscriber is not None and (subscriber.prepaid or not company.postpaid):
        return PREPAID, AccountKey(company.id, subscriber.id)
    limit = None if company.credit_limit is None else Decimal(company.credit_limit)
    return Payer(PayerKind.POSTPAID, limit), AccountKey(company.id, None)


def ledger_sum(session: Session, key: AccountKey) -> Decimal:
    query = select(func.coalesce(func.sum(LedgerMovement.amount), 0)).where(LedgerMovement.company_id == key.company_id)
    if key.subscriber_id is None:
        query = query.where(LedgerMovement.subscriber_id.is_(None))
    else:
        query = query.where(LedgerMovement.subscriber_id == key.subscriber_id)
    return Decimal(str(session.scalar(query) or 0)).quantize(MONEY_PLACES)


def balance(session: Session, key: AccountKey) -> Decimal:
    """The account's balance (ledger sum), after folding an outside change of the cached balance into it."""
    total = ledger_sum(session, key)
    if key.subscriber_id is None:
        return total
    subscriber = session.get(Subscriber, key.subscriber_id)
    cached = None if subscriber is None or subscriber.balance is None else Decimal(str(subscriber.balance))
    if cached is not None and cached.quantize(MONEY_PLACES) != total:
        diff = cached.quantize(MONEY_PLACES) - total
        session.add(
            LedgerMovement(
                company_id=key.company_id, subscriber_id=key.subscriber_id, kind=MovementKind.ADJUSTMENT.value,
                amount=diff, at=utcnow(), reference="balance set outside billing", by="provisioning",
            )  # fmt: skip
        )
        session.flush()
        total += diff
    return total


def record(
    session: Session, payer: Payer, key: AccountKey, move: Movement, *, leg_id: int | None = None, by: str = ""
) -> Decimal:
    """Check ``move`` against the payer's floor, store it and refresh the cached balance; the new balance."""
    after = check_movement(payer, balance(session, key), move)
    session.add(
        LedgerMovement(
            company_id=key.company_id, subscriber_id=key.subscriber_id, kind=move.kind.value, amount=move.amount,
            at=move.at, reference=move.reference[:200], leg_id=leg_id, by=by[:120],
        )  # fmt: skip
    )
    if key.subscriber_id is not None:
        subscriber = session.get(Subscriber, key.subscriber_id)
        if subscriber is not None:
            subscriber.balance = after  # type: ignore[assignment]  # Numeric column, mapped as float
    session.flush()
    return after


def top_up(
    session: Session, *, subscriber: Subscriber | None = None, company: Company | None = None, amount: Decimal,
    by: str, reference: str = "", kind: MovementKind = MovementKind.TOP_UP,
) -> Decimal:  # fmt: skip
    """A top-up (or refund/adjustment) of a subscriber's prepaid account, or of a company's postpaid one.
    Lifts the credit-limit lock of the company's subscribers when it brings the balance back."""
    if subscriber is not None:
        company = subscriber.company
    if company is None:
        raise LookupError("a top-up needs a subscriber or a company")
    payer, key = payer_for(company, subscriber) if subscriber is not None else payer_for(company, None)
    if subscriber is not None and key.subscriber_id is None:
        raise ValueError(f"{subscriber.name} is billed to {company.name} (postpaid): top up the company")
    text = reference or f"{kind.value} by {by}"
    after = record(session, payer, key, movement(kind, amount, utcnow(), text), by=by)
    if key.subscriber_id is None:
        apply_credit_locks(session, company, payer, after)
    return after


def apply_credit_locks(session: Session, company: Company, payer: Payer, after: Decimal) -> int:
    """The auto-lock: lock (or unlock) the company's postpaid subscribers at its credit limit; how many changed."""
    from bridge.billing.policy import apply_credit_rule

    changed = 0
    for subscriber in company.subscribers:
        if subscriber.prepaid:
            continue
        state = lock_state(subscriber)
        new = apply_credit_rule(state, payer, after)
        if new != state:
            set_lock(subscriber, new)
            changed += 1
    session.flush()
    return changed


# --- locks ----------------------------------------------------------------------------------------------


def lock_state(subscriber: Subscriber) -> LockState:
    reasons = {LockReason(r) for r in (subscriber.lock_reasons or "").split(",") if r in set(LockReason)}
    return LockState(frozenset(reasons))


def set_lock(subscriber: Subscriber, state: LockState) -> None:
    subscriber.lock_reasons = ",".join(sorted(r.value for r in state.reasons))


# --- profiles -------------------------------------------------------------------------------------------


def home_codes(config: Config) -> tuple[str, ...]:
    if config.billing.home_country_codes:
        return tuple(config.billing.home_country_codes)
    code = phonenumbers.country_code_for_region(config.numbering.default_country)
    return (str(code),) if code else ()


def destination_policy(session: Session, config: Config, company: Company | None) -> DestinationPolicy:
    rules = session.scalars(
        select(DestinationRule).where(
            DestinationRule.company_id.is_(None)
            | (DestinationRule.company_id == (company.id if company is not None else -1))
        )
    ).all()
    deny = list(DEFAULT_DENY) if config.billing.deny_satellite else []
    deny += [DenyRule(r.prefix, r.category or "denied") for r in rules if not r.allow]
    allow = tuple(r.prefix for r in rules if r.allow and r.company_id is not None)
    return DestinationPolicy(
        home_codes(config), tuple(deny), allow_international=bool(company and company.allow_international), allow=allow
    )


def limits(config: BillingConfig, company: Company | None, subscriber: Subscriber | None) -> Limits:
    def pick(own: int | None, default: int) -> int | None:
        value = own if own is not None else default
        return value or None

    return Limits(
        company_legs=pick(company.max_legs if company is not None else None, config.company_max_legs),
        subscriber_legs=pick(subscriber.max_legs if subscriber is not None else None, config.subscriber_max_legs),
        legs_per_hour=config.legs_per_hour or None,
    )


def profile(
    session: Session, config: Config, company: Company, subscriber: Subscriber | None, plan: RatePlan | None
) -> tuple[Profile, AccountKey]:
    payer, key = payer_for(company, subscriber)
    return (
        Profile(
            plan=plan, payer=payer, zone=zone(company.timezone), limits=limits(config.billing, company, subscriber),
            destinations=destination_policy(session, config, company),
        ),
        key,
    )


# --- statements -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementLeg:
    leg_id: int | None
    direction: str
    destination: str
    joined_at: dt.datetime | None
    disconnected_at: dt.datetime | None
    billed_s: int | None
    price: Decimal | None
    cause: str


@dataclass(frozen=True)
class StatementRun:
    run_id: int
    subject: str
    started_at: dt.datetime
    legs: tuple[StatementLeg, ...]

    @property
    def total(self) -> Decimal:
        return sum((leg.price or ZERO for leg in self.legs), ZERO)


@dataclass(frozen=True)
class Statement:
    subscriber_id: int
    name: str
    mobile: str
    start: dt.datetime
    end: dt.datetime
    opening: Decimal
    movements: tuple[LedgerMovement, ...]
    runs: tuple[StatementRun, ...]

    @property
    def closing(self) -> Decimal:
        return self.opening + sum((Decimal(m.amount) for m in self.movements), ZERO)


def statement(session: Session, subscriber: Subscriber, start: dt.datetime, end: dt.datetime) -> Statement:
    """Movements of the subscriber's ledger in ``[start, end)`` with the opening balance, and their
    conferences started in that range with each leg's price (from the CDRs)."""
    own = LedgerMovement.subscriber_id == subscriber.id
    total = func.coalesce(func.sum(LedgerMovement.amount), 0)
    opening = Decimal(str(session.scalar(select(total).where(own, LedgerMovement.at < start)) or 0))
    in_range = (own, LedgerMovement.at >= start, LedgerMovement.at < end)
    moves = session.scalars(select(LedgerMovement).where(*in_range).order_by(LedgerMovement.id)).all()
    runs = session.scalars(
        select(ConferenceRun)
        .where(ConferenceRun.subscriber_id == subscriber.id, ConferenceRun.started_at >= start,
               ConferenceRun.started_at < end)
        .order_by(ConferenceRun.id)
    ).all()  # fmt: skip
    return Statement(
        subscriber.id, subscriber.name, subscriber.mobile, start, end, opening.quantize(MONEY_PLACES),
        tuple(moves), tuple(_statement_run(session, run) for run in runs),
    )  # fmt: skip


def _statement_run(session: Session, run: ConferenceRun) -> StatementRun:
    cdrs: Sequence[Cdr] = session.scalars(select(Cdr).where(Cdr.service_id == run.id).order_by(Cdr.leg_id)).all()
    legs = tuple(
        StatementLeg(
            c.leg_id, c.direction, c.destination, c.joined_at, c.disconnected_at, c.billed_s,
            None if c.price is None else Decimal(c.price), c.refusal or c.cause,
        )  # fmt: skip
        for c in cdrs
    )
    return StatementRun(run.id, run.subject, run.started_at, legs)
