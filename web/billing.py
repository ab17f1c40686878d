"""Billing pages (issue 18): rate plans, rating a number, balances and top-ups, locks, statements (page, CSV,
PDF) and the active calls with forced disconnect.

Who sees what: the operator everything; a company admin their company (rate lookups on its plan, top-ups of
its prepaid subscribers, locks, statements, active calls); a subscriber their own statement. Every
company-scoped query goes through :func:`web.tenancy.scoped`. Plan upload is the operator's: the plan is the
price list the operator sells. The rules themselves live in :mod:`bridge.billing` and
:mod:`bridge.conference.accounts` (the CLI calls the same).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from bridge.billing import BillingError
from bridge.billing.gate import answered_seconds
from bridge.billing.policy import LockReason
from bridge.billing.ratecsv import ImportReport, dump_plan, load_plan
from bridge.billing.rating import Direction, RatePlan, describe, format_money, price, rate
from bridge.cdr.csvformat import zone
from bridge.conference import accounts
from bridge.config import Config
from bridge.control_client import ControlRequestError, EngineUnreachable
from bridge.db.models import Company, ConferenceRun, Leg, Role, Subscriber, SubscriberStatus
from bridge.phone import PhoneError, to_e164
from web import db
from web.clock import utc_now
from web.live import control
from web.security import STAFF, roles_required
from web.tenancy import current_scope, get_or_404, scoped

bp = Blueprint("billing", __name__, url_prefix="/billing")

View = str | Response | tuple[str, int]
ALL_ROLES = (Role.OPERATOR, Role.COMPANY_ADMIN, Role.SUBSCRIBER)


def _config() -> Config:
    config: Config = current_app.config["BRIDGE"]
    return config


def _companies() -> list[Company]:
    return list(db.session().scalars(scoped(Company).order_by(Company.name)))


def _company_arg() -> Company | None:
    """The company a staff page is about: the admin's own; the operator's choice (``company_id``, 0: none)."""
    scope = current_scope()
    if scope.role is not Role.OPERATOR:
        return get_or_404(Company, scope.company_id or 0)
    company_id = request.values.get("company_id", 0, type=int)
    return get_or_404(Company, company_id) if company_id else None


# --- rate plans -----------------------------------------------------------------------------------------


@bp.route("/rates")
@roles_required(*STAFF)
def rates() -> View:
    """The plan in force and rating a number on it; the operator's upload form (:func:`rates_upload`)."""
    return _rates_page(None)


def _rates_page(report: ImportReport | None) -> str:
    company = _company_arg()
    row = accounts.plan_row_for(db.session(), company)
    number = request.args.get("number", "").strip()
    answer = _rate_line(number, row, company) if number else ""
    return render_template(
        "billing/rates.html", companies=_companies(), company=company, plan=row, report=report, number=number,
        answer=answer, operator=current_scope().role is Role.OPERATOR,
    )  # fmt: skip


@bp.route("/rates", methods=["POST"])
@roles_required(Role.OPERATOR)
def rates_upload() -> View:
    """Upload a plan (the default, or a company's): all lines or none, every bad line reported."""
    company = _company_arg()
    report = _upload(company)
    if report is not None:
        return _rates_page(report), 400
    return redirect(url_for("billing.rates", company_id=company.id if company else 0))


def _upload(company: Company | None) -> ImportReport | None:
    upload = request.files.get("plan")
    if upload is None or not upload.filename:
        flash("Choose a CSV file to upload.", "error")
        return None  # nothing to report line by line: the form again
    name = request.form.get("name", "").strip() or (company.name if company else accounts.DEFAULT_PLAN_NAME)
    loaded = load_plan(upload.read(), name=name[:80])
    if not isinstance(loaded, RatePlan):
        return loaded
    accounts.save_plan(db.session(), loaded, company_id=company.id if company else None, default=company is None)
    db.session().commit()
    flash(f"Imported {len(loaded)} rates as plan {name!r}.", "success")
    return None


def _rate_line(number: str, row: Any, company: Company | None) -> str:
    try:
        e164 = to_e164(number, _config().numbering.default_country)
        plan = accounts.plan_from_row(row) if row is not None else None
        found = rate(plan, e164, utc_now(), zone(company.timezone if company else None), Direction.OUTBOUND)
        return describe(e164, found)
    except (PhoneError, BillingError) as exc:
        return f"{number}: {exc}"


@bp.route("/rates.csv")
@roles_required(*STAFF)
def rates_csv() -> Response:
    row = accounts.plan_row_for(db.session(), _company_arg())
    plan = accounts.plan_from_row(row) if row is not None else RatePlan("none", ())
    return _download(dump_plan(plan), f"rates-{plan.name}.csv", "text/csv")


# --- balances, top-ups, locks ---------------------------------------------------------------------------


@bp.route("/")
@roles_required(*STAFF)
def balances() -> View:
    session = db.session()
    live = scoped(Subscriber).where(Subscriber.status != SubscriberStatus.DELETED).order_by(Subscriber.name)
    rows = []
    for sub in session.scalars(live):
        payer, key = accounts.payer_for(sub.company, sub)
        rows.append({"sub": sub, "prepaid": key.subscriber_id is not None, "balance": accounts.ledger_sum(session, key),
                     "locked": accounts.lock_state(sub)})  # fmt: skip
    companies = []
    for company in _companies():
        _payer, key = accounts.payer_for(company, None)
        companies.append({"company": company, "balance": accounts.ledger_sum(session, key)})
    return render_template("billing/balances.html", rows=rows, companies=companies, money=format_money,
                           operator=current_scope().role is Role.OPERATOR)  # fmt: skip


def _amount() -> Decimal | None:
    try:
        amount = Decimal(request.form.get("amount", "").strip())
    except InvalidOperation:
        return None
    ok = amount.is_finite() and amount > 0 and amount == amount.quantize(Decimal("0.0001"))
    return amount if ok else None


@bp.route("/subscribers/<int:sid>/topup", methods=["POST"])
@roles_required(*STAFF)
def topup(sid: int) -> View:
    subscriber = get_or_404(Subscriber, sid)
    amount = _amount()
    if amount is None:
        flash("Top-up: a positive amount with at most 4 decimals.", "error")
        return redirect(url_for("billing.balances"))
    try:
        after = accounts.top_up(db.session(), subscriber=subscriber, amount=amount, by=_who(),
                                reference=request.form.get("reference", "")[:200])  # fmt: skip
    except (ValueError, BillingError) as exc:
        db.session().rollback()
        flash(f"Top-up refused: {exc}", "error")
        return redirect(url_for("billing.balances"))
    db.session().commit()
    flash(f"{subscriber.name}: +{amount}, balance {format_money(after)}.", "success")
    return redirect(url_for("billing.balances"))


@bp.route("/companies/<int:company_id>/topup", methods=["POST"])
@roles_required(Role.OPERATOR)
def company_topup(company_id: int) -> View:
    company = get_or_404(Company, company_id)
    amount = _amount()
    if amount is None:
        flash("Top-up: a positive amount with at most 4 decimals.", "error")
        return redirect(url_for("billing.balances"))
    after = accounts.top_up(db.session(), company=company, amount=amount, by=_who())
    db.session().commit()
    flash(f"{company.name}: +{amount}, balance {format_money(after)}.", "success")
    return redirect(url_for("billing.balances"))


@bp.route("/companies/<int:company_id>/settings", methods=["POST"])
@roles_required(Role.OPERATOR)
def company_settings(company_id: int) -> View:
    """Postpaid or not, credit limit (empty: none), legs at once (empty: the config's), calls abroad."""
    company = get_or_404(Company, company_id)
    try:
        limit = _optional(request.form.get("credit_limit", ""), Decimal)
        legs = _optional(request.form.get("max_legs", ""), int)
    except (InvalidOperation, ValueError):
        flash("Settings: the credit limit is an amount, the call limit a whole number (or empty).", "error")
        return redirect(url_for("billing.balances"))
    if (limit is not None and (not limit.is_finite() or limit < 0)) or (legs is not None and legs < 0):
        flash("Settings: limits must not be negative.", "error")
        return redirect(url_for("billing.balances"))
    company.postpaid = request.form.get("postpaid", "1") in ("1", "on", "true")
    company.credit_limit, company.max_legs = limit, legs
    company.allow_international = request.form.get("allow_international", "") in ("1", "on", "true")
    payer, key = accounts.payer_for(company, None)
    accounts.apply_credit_locks(db.session(), company, payer, accounts.ledger_sum(db.session(), key))
    db.session().commit()
    flash(f"{company.name}: settings saved.", "success")
    return redirect(url_for("billing.balances"))


@bp.route("/subscribers/<int:sid>/limits", methods=["POST"])
@roles_required(*STAFF)
def subscriber_limits(sid: int) -> View:
    subscriber = get_or_404(Subscriber, sid)
    try:
        legs = _optional(request.form.get("max_legs", ""), int)
    except ValueError:
        legs = -1
    if legs is not None and legs < 0:
        flash("Call limit: a whole number, or empty for the default.", "error")
        return redirect(url_for("billing.balances"))
    subscriber.max_legs = legs
    db.session().commit()
    flash(f"{subscriber.name}: call limit {'default' if legs is None else legs}.", "success")
    return redirect(url_for("billing.balances"))


def _optional(text: str, kind: Any) -> Any:
    text = text.strip()
    return kind(text) if text else None


@bp.route("/destinations", methods=["GET", "POST"])
@roles_required(Role.OPERATOR)
def destinations() -> View:
    """The toll-fraud guard's prefixes: operator-wide denies, and per company allows or denies."""
    from bridge.billing.prefixes import digits
    from bridge.db.billing import DestinationRule

    session = db.session()
    if request.method == "POST":
        rule_id = request.form.get("delete", type=int)
        if rule_id:
            rule = session.get(DestinationRule, rule_id)
            if rule is not None:
                session.delete(rule)
        else:
            try:
                prefix = digits(request.form.get("prefix", ""))
            except BillingError as exc:
                flash(f"Prefix: {exc}", "error")
                return redirect(url_for("billing.destinations"))
            company_id = request.form.get("company_id", 0, type=int) or None
            allow = request.form.get("allow", "") in ("1", "on", "true") and company_id is not None
            category = request.form.get("category", "").strip()[:40] or ("allowed" if allow else "denied")
            same = select(DestinationRule).where(DestinationRule.company_id.is_(None) if company_id is None
                                                 else DestinationRule.company_id == company_id,
                                                 DestinationRule.prefix == prefix)  # fmt: skip
            if session.scalars(same).first() is not None:
                flash(f"Prefix {prefix} already has a rule there.", "error")
                return redirect(url_for("billing.destinations"))
            session.add(DestinationRule(company_id=company_id, prefix=prefix, category=category, allow=allow))
        session.commit()
        return redirect(url_for("billing.destinations"))
    rules = session.scalars(select(DestinationRule).order_by(DestinationRule.company_id, DestinationRule.prefix))
    return render_template("billing/destinations.html", rules=list(rules), companies=_companies())


@bp.route("/subscribers/<int:sid>/lock", methods=["POST"])
@roles_required(*STAFF)
def lock(sid: int) -> View:
    subscriber = get_or_404(Subscriber, sid)
    state = accounts.lock_state(subscriber)
    locked = request.form.get("locked", "1") in ("1", "true", "on")
    state = state.lock(LockReason.MANUAL) if locked else state.unlock(LockReason.MANUAL)
    accounts.set_lock(subscriber, state)
    db.session().commit()
    flash(f"{subscriber.name}: {'locked' if state.locked else 'unlocked'}.", "success")
    return redirect(url_for("billing.balances"))


def _who() -> str:
    from flask_login import current_user

    return f"portal:{getattr(current_user, 'username', '')}"


# --- statements -----------------------------------------------------------------------------------------


def _statement(sid: int) -> accounts.Statement:
    subscriber = get_or_404(Subscriber, sid)
    today = utc_now().date()
    try:
        start = dt.date.fromisoformat(request.args.get("start", "")) if request.args.get("start") else None
        end = dt.date.fromisoformat(request.args.get("end", "")) if request.args.get("end") else None
    except ValueError:
        start = end = None
    end = end or today
    start = start or end - dt.timedelta(days=30)
    if end < start:
        start, end = end, start
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time())
    return accounts.statement(db.session(), subscriber, dt.datetime.combine(start, dt.time()), until)


@bp.route("/subscribers/<int:sid>/statement")
@roles_required(*ALL_ROLES)
def statement(sid: int) -> View:
    st = _statement(sid)
    return render_template("billing/statement.html", st=st, money=format_money,
                           start=st.start.date(), end=(st.end - dt.timedelta(days=1)).date())  # fmt: skip


@bp.route("/subscribers/<int:sid>/statement.csv")
@roles_required(*ALL_ROLES)
def statement_csv(sid: int) -> Response:
    st = _statement(sid)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["kind", "at", "reference", "amount", "run_id", "leg_id", "destination", "billed_s", "price"])
    writer.writerow(["opening", st.start.isoformat(), "", st.opening, "", "", "", "", ""])
    for m in st.movements:
        writer.writerow([m.kind, m.at.isoformat(), m.reference, m.amount, "", m.leg_id or "", "", "", ""])
    for run in st.runs:
        for leg in run.legs:
            writer.writerow(["leg", leg.joined_at.isoformat() if leg.joined_at else "", run.subject, "", run.run_id,
                             leg.leg_id or "", leg.destination, leg.billed_s or 0, leg.price or ""])  # fmt: skip
    writer.writerow(["closing", st.end.isoformat(), "", st.closing, "", "", "", "", ""])
    return _download(out.getvalue(), f"statement-{sid}-{st.start:%Y%m%d}.csv", "text/csv")


@bp.route("/subscribers/<int:sid>/statement.pdf")
@roles_required(*ALL_ROLES)
def statement_pdf(sid: int) -> Response:
    from web.statementpdf import render

    st = _statement(sid)
    return _download(render(st), f"statement-{sid}-{st.start:%Y%m%d}.pdf", "application/pdf")


def _download(body: str | bytes, name: str, mimetype: str) -> Response:
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- priced legs ---------------------------------------------------------------------------------------

PRICED_COLUMNS = (
    "cdr_id", "leg_id", "company_id", "company_name", "subscriber_id", "service_id", "direction", "destination",
    "cli", "joined_at", "disconnected_at", "rate_plan", "rate_prefix", "billed_s", "price", "refusal", "cause",
)  # fmt: skip


@bp.route("/legs.csv")
@roles_required(*STAFF)
def priced_csv() -> Response:
    """Every CDR that ended in ``[start, end]`` (dates, UTC) with its rating: the billing feed of the legs.
    (The CDR file format itself is unchanged; its rows carry the same ids.)"""
    from bridge.db.models import Cdr

    today = utc_now().date()
    try:
        end = dt.date.fromisoformat(request.args.get("end", "")) if request.args.get("end") else today
        start = dt.date.fromisoformat(request.args.get("start", "")) if request.args.get("start") else end
    except ValueError:
        start = end = today
    since, until = dt.datetime.combine(min(start, end), dt.time()), dt.datetime.combine(max(start, end), dt.time())
    query = (
        scoped(Cdr)
        .where(Cdr.disconnected_at >= since, Cdr.disconnected_at < until + dt.timedelta(days=1))
        .order_by(Cdr.disconnected_at, Cdr.id)
    )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(PRICED_COLUMNS)
    for c in db.session().scalars(query):
        writer.writerow([
            c.id, c.leg_id, c.company_id, c.company_name, c.subscriber_id, c.service_id, c.direction, c.destination,
            c.cli, c.joined_at.isoformat() if c.joined_at else "",
            c.disconnected_at.isoformat() if c.disconnected_at else "", c.rate_plan, c.rate_prefix,
            "" if c.billed_s is None else c.billed_s, "" if c.price is None else f"{Decimal(c.price):.4f}",
            c.refusal, c.cause,
        ])  # fmt: skip
    return _download(out.getvalue(), f"priced-legs-{min(start, end)}-{max(start, end)}.csv", "text/csv")


# --- active calls ---------------------------------------------------------------------------------------


def active_legs() -> list[dict[str, Any]]:
    """Every leg up now that the user may see: company, subscriber, numbers, duration, price so far."""
    session = db.session()
    query = (
        scoped(Leg)
        .where(Leg.status == "connected", Leg.joined_at.is_not(None), Leg.disconnected_at.is_(None))
        .order_by(Leg.run_id, Leg.id)
    )
    now = utc_now()
    rows: list[dict[str, Any]] = []
    plans: dict[int | None, RatePlan | None] = {}
    for leg in session.scalars(query):
        run: ConferenceRun = leg.run
        company = session.get(Company, run.company_id) if run.company_id is not None else None
        subscriber = session.get(Subscriber, run.subscriber_id) if run.subscriber_id is not None else None
        seconds = max(0.0, (now - (leg.joined_at or now)).total_seconds())
        rows.append({
            "leg": leg, "run": run, "company": company.name if company else "", "seconds": int(seconds),
            "subscriber": subscriber.name if subscriber else "", "price": _so_far(plans, company, leg, seconds),
        })  # fmt: skip
    return rows


def _so_far(plans: dict[int | None, RatePlan | None], company: Company | None, leg: Leg, seconds: float) -> str:
    key = company.id if company else None
    if key not in plans:
        row = accounts.plan_row_for(db.session(), company)
        plans[key] = accounts.plan_from_row(row) if row is not None else None
    inbound = leg.direction == "in"
    number = (leg.dnis or leg.called) if inbound else leg.called
    try:
        found = rate(plans[key], number, leg.joined_at or utc_now(), zone(company.timezone if company else None),
                     Direction.INBOUND if inbound else Direction.OUTBOUND)  # fmt: skip
    except BillingError:
        return ""
    return "" if found is None else format_money(price(found, answered_seconds(seconds)).amount)


@bp.route("/active")
@roles_required(*STAFF)
def active() -> View:
    return render_template("billing/active.html", rows=active_legs())


@bp.route("/active/<int:run_id>/legs/<int:leg_id>/disconnect", methods=["POST"])
@roles_required(*STAFF)
def disconnect_leg(run_id: int, leg_id: int) -> View:
    leg = get_or_404(Leg, leg_id)
    if leg.run_id != run_id:
        abort(404)
    return _engine(lambda: control().kick(run_id, leg.id), f"Leg {leg.id} disconnected.")


@bp.route("/active/<int:run_id>/end", methods=["POST"])
@roles_required(*STAFF)
def disconnect_run(run_id: int) -> View:
    run = get_or_404(ConferenceRun, run_id)
    return _engine(lambda: control().end(run.id), f"Conference {run.id} ended.")


def _engine(call: Any, done: str) -> View:
    try:
        call()
    except EngineUnreachable:
        flash("Not done: engine unreachable", "error")
    except ControlRequestError as exc:
        flash(f"Not done: {exc.message}", "error")
    else:
        flash(done, "success")
    return redirect(url_for("billing.active"))
