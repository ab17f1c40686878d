"""Billing glue of the conference service (issue 18): the gate before every launch, dial and dial-in, the
warning and the cut while a leg is up, the price when it ends.

The service calls in at six points, and this module decides through :mod:`bridge.conference.policy`'s seam
(:func:`~bridge.conference.policy.may_dial` with the answer of :func:`bridge.billing.gate.check_dial`):

* :meth:`BillingGlue.launch_check` -- a launch (SMS, portal, speed dial) asks for the subscriber's own leg;
* :meth:`BillingGlue.before_dial` -- each INVITE, when the pacer releases it (launch legs, portal dials,
  callbacks alike); a refused leg fails with the refusal's cause, the leg row keeps it for the CDR, and the
  subscriber gets one SMS per conference and cause;
* :meth:`BillingGlue.before_dial_in` / :meth:`BillingGlue.hold_in` -- an admitted caller;
* :meth:`BillingGlue.answered` -- a leg joined: its warning and cut instants start;
* :meth:`BillingGlue.poll` -- plays ``one_minute_left`` and cuts at 0 (cause ``credit exhausted``);
* :meth:`BillingGlue.settle` -- a leg ended: priced (:func:`bridge.billing.gate.settle_leg`), its movement
  stored, its leg row (and so its CDR) gets rate plan, prefix, billed seconds and price.

What a grant reserves: each leg that is up (or being dialled) holds the price of its maximum duration; the
sum for its paying account is the ``reserved`` of the next check, and a launch splits the balance among the
legs still to be dialled (``share``), so equal rates are cut together. With billing disabled every method
answers "allowed" and does nothing (the appliance's own rule in :func:`~bridge.conference.policy.may_dial`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

from bridge.billing import BillingError
from bridge.billing.gate import Allowed, Profile, answered_seconds, check_dial, check_dial_in, settle_leg
from bridge.billing.ledger import Deadlines, Payer, deadlines
from bridge.billing.policy import DialWindow, LockState, Refusal, Usage
from bridge.billing.ratecsv import load_plan
from bridge.billing.rating import Direction, RatePlan, format_money, price, rate
from bridge.conference import accounts
from bridge.conference.machine import Action, Conference, LegStatus, Play
from bridge.conference.policy import Launcher
from bridge.conference.records import Records, RunMeta, as_launcher
from bridge.config import Config
from bridge.db.models import Company, Leg, Subscriber

log = logging.getLogger(__name__)

WARNING_PROMPT = "one_minute_left"
CUT_CAUSE = "credit exhausted"


@dataclass
class _Grant:
    run_id: int
    company_id: int
    subscriber_id: int | None
    key: accounts.AccountKey
    payer: Payer
    allowed: Allowed
    number: str
    mobile: str
    """Whom to text about this leg's money (the run's subscriber); empty: nobody."""
    answered_at: float | None = None
    deadlines: Deadlines | None = None
    warned: bool = False
    cut: bool = False


@dataclass
class _Context:
    profile: Profile
    key: accounts.AccountKey
    balance: Decimal
    subscriber: Launcher | None
    mobile: str
    lock: LockState


@dataclass
class BillingGlue:
    config: Config
    session_factory: sessionmaker[Session]
    records: Records
    utc: Callable[[], dt.datetime]
    grants: dict[int, _Grant] = field(default_factory=dict)
    _windows: dict[int, DialWindow] = field(default_factory=dict)
    _plans: dict[tuple[int, dt.datetime], RatePlan] = field(default_factory=dict)
    _file_plan: RatePlan | None = None
    _told: set[tuple[int, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.enabled:
            self.records.price_recovered = self.price_recovered

    @property
    def enabled(self) -> bool:
        return self.config.billing.enabled

    def price_recovered(self, session: Session, leg: Leg) -> None:
        """Price a leg a crashed engine left open (its grant died with that process): the plan's rate at its
        answer, capped at the payer's floor, as :meth:`settle` would have; never free because of a crash."""
        run = leg.run
        if run.company_id is None or leg.joined_at is None or leg.disconnected_at is None:
            return
        ctx = self._context(session, run.company_id, run.subscriber_id)
        if ctx is None:
            return
        inbound = leg.direction == "in"
        direction = Direction.INBOUND if inbound else Direction.OUTBOUND
        try:
            found = rate(ctx.profile.plan, (leg.dnis or leg.called) if inbound else leg.called, leg.joined_at,
                         ctx.profile.zone, direction)  # fmt: skip
        except BillingError:
            return
        if found is None:
            return
        duration = max(0.0, (leg.disconnected_at - leg.joined_at).total_seconds())
        result = settle_leg(ctx.profile.payer, Allowed(found, None, Decimal(0)), duration, balance=ctx.balance,
                            at=self.utc(), reference=f"leg {leg.id} (closed at restart)")  # fmt: skip
        if result.movement is not None:
            accounts.record(session, ctx.profile.payer, ctx.key, result.movement, leg_id=leg.id, by="engine")
        if result.charge is not None:
            leg.rate_plan, leg.rate_prefix = result.charge.rate.plan[:80], result.charge.rate.prefix
            leg.billed_s, leg.price = result.charge.billed_seconds, result.charge.amount

    # --- the gate -------------------------------------------------------------------------------

    def launch_check(self, launcher: Launcher, numbers: list[str], now: float) -> Allowed | Refusal | None:
        """The gate's answer for the launch's first leg (the subscriber's own, as a rule), for
        :func:`~bridge.conference.policy.may_launch`; None when billing is off (today's rule applies)."""
        if not self.enabled or not numbers or launcher.company_id is None:
            return None
        with self._session() as session:
            ctx = self._context(session, launcher.company_id, launcher.subscriber_id)
            if ctx is None:
                return None
            billed = self._check(ctx, numbers[0], now, share=len(numbers))
            session.commit()
        return billed

    def before_dial(self, meta: RunMeta, conf: Conference, leg_id: int, number: str, now: float) -> str | None:
        """Check one INVITE about to be sent; the refusal's cause (the leg is then failed) or None."""
        if not self.enabled or meta.company_id is None:
            return None
        waiting = [i for i in conf.legs.values() if i.status is LegStatus.DIALING and i.leg_id not in self.grants]
        share = len(waiting)
        with self._session() as session:
            ctx = self._context(session, meta.company_id, meta.subscriber_id)
            if ctx is None:
                return None
            billed = self._check(ctx, number, now, share=max(1, share))
            if isinstance(billed, Refusal):
                self._refused(session, meta.run_id, leg_id, billed, ctx.mobile)
                session.commit()
                return billed.cause
            session.commit()
        if meta.subscriber_id is not None:
            self._windows.setdefault(meta.subscriber_id, DialWindow()).record(now)
        self.grants[leg_id] = _Grant(
            meta.run_id, meta.company_id, meta.subscriber_id, ctx.key, ctx.profile.payer, billed, number, ctx.mobile
        )
        return None

    def before_dial_in(self, company_id: int | None, subscriber_id: int | None, dnis: str) -> _Grant | Refusal | None:
        """Check an admitted caller; a grant to :meth:`hold_in` once the leg exists, a refusal, or None."""
        if not self.enabled or company_id is None:
            return None
        with self._session() as session:
            ctx = self._context(session, company_id, subscriber_id)
            if ctx is None:
                return None
            billed = check_dial_in(
                ctx.profile, dnis, balance=ctx.balance, reserved=self._reserved(ctx.key),
                usage=self._usage(company_id, subscriber_id), at=self.utc(), owned=subscriber_id is not None,
            )  # fmt: skip
            session.commit()
        if isinstance(billed, Refusal):
            log.info("dial-in on %s refused: %s", dnis, billed.cause)
            return billed
        return _Grant(0, company_id, subscriber_id, ctx.key, ctx.profile.payer, billed, dnis, ctx.mobile)

    def hold_in(self, grant: _Grant | Refusal | None, run_id: int, leg_id: int) -> None:
        if isinstance(grant, _Grant):
            grant.run_id = run_id
            self.grants[leg_id] = grant

    # --- while up -------------------------------------------------------------------------------

    def answered(self, leg_id: int, now: float) -> None:
        grant = self.grants.get(leg_id)
        if grant is not None and grant.answered_at is None:
            grant.answered_at = now
            grant.deadlines = deadlines(now, grant.allowed.max_seconds, int(self.config.billing.warn_before_s))

    def poll(self, now: float, conferences: Mapping[int, Conference]) -> Iterator[tuple[int, list[Action]]]:
        """The warnings and cuts due at ``now``: ``(run_id, actions)`` for the service to carry out."""
        for leg_id, grant in list(self.grants.items()):
            due = grant.deadlines
            conf = conferences.get(grant.run_id)
            if due is None or grant.cut or conf is None:
                continue
            if now >= due.cut_at:
                grant.cut = True
                info = conf.legs.get(leg_id)
                if info is not None and info.status is LegStatus.CONNECTED:
                    log.info("leg %s cut: %s", leg_id, CUT_CAUSE)
                    yield grant.run_id, conf.kick(leg_id, now, cause=CUT_CAUSE)
            elif now >= due.warn_at and not grant.warned and due.cut_at - due.warn_at > 0:
                grant.warned = True
                log.info("leg %s warned: %.0f s of credit left", leg_id, due.cut_at - now)
                yield grant.run_id, [Play((WARNING_PROMPT,), leg_id)]

    def active(self, now: float) -> dict[int, dict[str, object]]:
        """Per answered leg: its rate and the price so far (the portal's active calls page)."""
        out: dict[int, dict[str, object]] = {}
        for leg_id, grant in self.grants.items():
            rate = grant.allowed.rate
            if grant.answered_at is None or rate is None:
                continue
            seconds = answered_seconds(max(0.0, now - grant.answered_at))
            out[leg_id] = {"rate": rate.description, "price_so_far": str(price(rate, seconds).amount)}
        return out

    # --- when a leg ends ------------------------------------------------------------------------

    def settle(self, leg_id: int, now: float) -> None:
        """Price the leg, store its movement and its billing columns (before its CDR is written)."""
        grant = self.grants.pop(leg_id, None)
        if grant is None:
            return
        duration = 0.0 if grant.answered_at is None else max(0.0, now - grant.answered_at)
        threshold = self._threshold()
        try:
            with self._session() as session:
                before = accounts.balance(session, grant.key)
                result = settle_leg(
                    grant.payer, grant.allowed, duration, balance=before, at=self.utc(), reference=f"leg {leg_id}",
                    low_balance_threshold=threshold,
                )  # fmt: skip
                if result.movement is not None:
                    accounts.record(session, grant.payer, grant.key, result.movement, leg_id=leg_id, by="engine")
                leg = session.get(Leg, leg_id)
                if leg is not None and result.charge is not None:
                    leg.rate_plan, leg.rate_prefix = result.charge.rate.plan[:80], result.charge.rate.prefix
                    leg.billed_s, leg.price = result.charge.billed_seconds, result.charge.amount
                if result.uncollected:
                    log.warning("leg %s: %s could not be collected", leg_id, result.uncollected)
                self._tell_after(session, grant, result.balance, result.low_balance)
                if result.credit_limit_reached:
                    company = session.get(Company, grant.company_id)
                    if company is not None:
                        accounts.apply_credit_locks(session, company, grant.payer, result.balance)
                session.commit()
        except (BillingError, LookupError):
            log.exception("settling leg %s failed", leg_id)

    def _tell_after(self, session: Session, grant: _Grant, after: Decimal, low: bool) -> None:
        if not grant.mobile:
            return
        if grant.cut:
            text = f"Your call to {grant.number} was ended: your credit ran out. Please top up."
            self._sms(session, grant.mobile, text)
        elif low:
            self._sms(session, grant.mobile, f"Your balance is low: {format_money(after)} left. Please top up.")

    # --- internals ------------------------------------------------------------------------------

    def _check(self, ctx: _Context, number: str, now: float, *, share: int) -> Allowed | Refusal:
        subscriber_id = None if ctx.subscriber is None else ctx.subscriber.subscriber_id
        return check_dial(
            ctx.profile, number, balance=ctx.balance, reserved=self._reserved(ctx.key),
            usage=self._usage(ctx.key.company_id, subscriber_id), lock=ctx.lock,
            window=self._windows.setdefault(subscriber_id or 0, DialWindow()), at=self.utc(), now=now, share=share,
        )  # fmt: skip

    def _context(self, session: Session, company_id: int, subscriber_id: int | None) -> _Context | None:
        company = session.get(Company, company_id)
        if company is None:
            return None
        subscriber = session.get(Subscriber, subscriber_id) if subscriber_id is not None else None
        profile, key = accounts.profile(session, self.config, company, subscriber, self._plan(session, company))
        if subscriber is None:
            return _Context(profile, key, accounts.balance(session, key), None, "", LockState())
        return _Context(
            profile, key, accounts.balance(session, key), as_launcher(subscriber), subscriber.mobile,
            accounts.lock_state(subscriber),
        )  # fmt: skip

    def _plan(self, session: Session, company: Company) -> RatePlan | None:
        row = accounts.plan_row_for(session, company)
        if row is None:
            return self._default_file_plan()
        cache_key = (row.id, row.created_at)
        plan = self._plans.get(cache_key)
        if plan is None:
            self._plans = {k: v for k, v in self._plans.items() if k[0] != row.id}
            plan = self._plans[cache_key] = accounts.plan_from_row(row)
        return plan

    def _default_file_plan(self) -> RatePlan | None:
        path = self.config.billing.default_plan_csv
        if not path:
            return None
        if self._file_plan is None:
            loaded = load_plan(self.config.resolve(path).read_bytes(), name=accounts.DEFAULT_PLAN_NAME)
            if not isinstance(loaded, RatePlan):
                log.error("billing.default_plan_csv %s is not a valid plan:\n%s", path, loaded)
                return None
            self._file_plan = loaded
        return self._file_plan

    def _reserved(self, key: accounts.AccountKey) -> Decimal:
        return sum((g.allowed.reservation for g in self.grants.values() if g.key == key), Decimal(0))

    def _usage(self, company_id: int, subscriber_id: int | None) -> Usage:
        return Usage(
            company_legs=sum(1 for g in self.grants.values() if g.company_id == company_id),
            subscriber_legs=sum(
                1 for g in self.grants.values() if subscriber_id is not None and g.subscriber_id == subscriber_id
            ),
        )

    def _refused(self, session: Session, run_id: int, leg_id: int, refusal: Refusal, mobile: str) -> None:
        log.info("leg %s refused before dialling: %s", leg_id, refusal.cause)
        leg = session.get(Leg, leg_id)
        if leg is not None:
            leg.refusal = refusal.cause
        if mobile and (run_id, refusal.cause) not in self._told:
            if len(self._told) > 10_000:
                self._told.clear()  # bounded: at worst one more SMS for a long-running conference
            self._told.add((run_id, refusal.cause))
            self._sms(session, mobile, refusal.message)

    def _sms(self, session: Session, mobile: str, text: str) -> None:
        from bridge.smpp.queue import queue_mt

        queue_mt(session, destination=mobile, text=text, source=self.records.short_code())

    def _threshold(self) -> Decimal | None:
        text = self.config.billing.low_balance_threshold
        return Decimal(text) if text else None

    @contextmanager
    def _session(self) -> Iterator[Session]:
        session = self.session_factory()
        try:
            yield session
        finally:
            session.close()
