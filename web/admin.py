"""Operator area: companies, portal accounts, DNIS pool, trunk groups, billing CSV, system status."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from bridge import provisioning
from bridge.config import Config
from bridge.control_client import ControlError
from bridge.db.models import (
    Account,
    Cdr,
    Company,
    DnisKind,
    DnisNumber,
    InstantConference,
    Leg,
    Role,
    Subscriber,
)
from bridge.provisioning import ProvisioningError
from bridge.provisioning.audit import snapshot_account, snapshot_company
from web import charts, db, reports
from web.clock import utc_now
from web.company import _cdr_conditions, _range, daily, stream_cdr_csv
from web.forms import AccountForm, CompanyForm, DnisForm, refuse
from web.live import control
from web.portal_audit import audit
from web.security import roles_required
from web.tenancy import get_or_404, scoped

bp = Blueprint("admin", __name__, url_prefix="/admin")
_DNIS = re.compile(r"^\+?[0-9]{2,20}$")

View = str | Response | tuple[str, int]
operator_only = roles_required(Role.OPERATOR)


def _config() -> Config:
    config: Config = current_app.config["BRIDGE"]
    return config


def _status() -> dict[str, Any] | None:
    try:
        return control().status()
    except ControlError:
        return None


@bp.route("/")
@operator_only
def dashboard() -> View:
    form, start, end, company_id = _range()
    by_company = daily(start, end, company_id, by="company")
    session = db.session()
    counts = {
        "companies": session.scalar(select(func.count(Company.id))),
        "subscribers": session.scalar(select(func.count(Subscriber.id))),
        "ics": session.scalar(select(func.count(InstantConference.id))),
    }
    return render_template(
        "admin/dashboard.html",
        form=form,
        counts=counts,
        status=_status(),
        per_company=charts.bar_chart(reports.per_key(by_company), title="Minutes per company"),
        per_day=charts.bar_chart(reports.days(start, end, reports.per_day(by_company)), title="Minutes per day"),
    )


# --- companies -------------------------------------------------------------------------------------


@bp.route("/companies")
@operator_only
def companies() -> View:
    rows = db.session().scalars(scoped(Company).order_by(Company.name)).all()
    return render_template("admin/companies.html", companies=rows)


@bp.route("/companies/new", methods=["GET", "POST"])
@operator_only
def company_new() -> View:
    form = CompanyForm()
    if form.validate_on_submit():
        company = _save_company(form, None)
        if company is not None:
            flash(f"Company {company.name} added.", "info")
            return redirect(url_for("admin.companies"))
    return render_template("form.html", form=form, title="New company")


@bp.route("/companies/<int:company_id>/edit", methods=["GET", "POST"])
@operator_only
def company_edit(company_id: int) -> View:
    company = get_or_404(Company, company_id)
    form = CompanyForm(obj=company)
    if form.validate_on_submit() and _save_company(form, company) is not None:
        flash(f"Company {company.name} saved.", "info")
        return redirect(url_for("admin.companies"))
    return render_template("form.html", form=form, title=f"Edit company {company.name}")


def _save_company(form: CompanyForm, company: Company | None) -> Company | None:
    session = db.session()
    before = snapshot_company(company)
    try:
        saved = provisioning.save_company(
            session, name=form.name.data or "", timezone=form.timezone.data or "UTC", company=company
        )
    except ProvisioningError as exc:
        refuse(form, exc)
        return None
    audit("modify" if company else "create", "company", saved.id, before, snapshot_company(saved))
    session.commit()
    return saved


@bp.route("/companies/<int:company_id>/delete", methods=["POST"])
@operator_only
def company_delete(company_id: int) -> Response:
    company = get_or_404(Company, company_id)
    session = db.session()
    if session.scalar(select(func.count(Subscriber.id)).where(Subscriber.company_id == company.id)):
        flash(f"Company {company.name} still has subscribers: delete them first.", "error")
        return redirect(url_for("admin.companies"))
    try:
        with session.begin_nested():
            for account in session.scalars(select(Account).where(Account.company_id == company.id)):
                audit("delete", "account", account.id, snapshot_account(account), None)
                session.delete(account)
            audit("delete", "company", company.id, snapshot_company(company), None)
            session.delete(company)
        session.commit()
    except IntegrityError:
        session.rollback()
        flash(f"Company {company.name} has history and cannot be deleted.", "error")
        return redirect(url_for("admin.companies"))
    flash(f"Company {company.name} deleted.", "info")
    return redirect(url_for("admin.companies"))


# --- accounts (operators and company admins; subscriber logins live with the subscriber) -----------


@bp.route("/accounts")
@operator_only
def accounts() -> View:
    rows = db.session().scalars(scoped(Account).order_by(Account.role, Account.username)).all()
    return render_template("admin/accounts.html", accounts=rows, now=utc_now())


def _account_form(account: Account | None) -> AccountForm:
    form = AccountForm(obj=account)
    form.company_id.choices = [(0, "(none: operator)")] + [
        (c.id, c.name) for c in db.session().scalars(scoped(Company).order_by(Company.name))
    ]
    if account is not None and request.method == "GET":
        form.company_id.data = account.company_id or 0
        form.role.data = account.role.value
    return form


@bp.route("/accounts/new", methods=["GET", "POST"])
@operator_only
def account_new() -> View:
    form = _account_form(None)
    if form.validate_on_submit():
        account = _save_account(form, None)
        if account is not None:
            flash(f"Account {account.username} added.", "info")
            return redirect(url_for("admin.accounts"))
    return render_template("form.html", form=form, title="New account")


@bp.route("/accounts/<int:account_id>/edit", methods=["GET", "POST"])
@operator_only
def account_edit(account_id: int) -> View:
    account = get_or_404(Account, account_id)
    form = _account_form(account)
    if account.role is Role.SUBSCRIBER:
        form.role.choices = [("subscriber", "subscriber")]
    if form.validate_on_submit() and _save_account(form, account) is not None:
        flash(f"Account {account.username} saved.", "info")
        return redirect(url_for("admin.accounts"))
    return render_template("form.html", form=form, title=f"Edit account {account.username}")


def _save_account(form: AccountForm, account: Account | None) -> Account | None:
    """Username, password and company rules from the core; unlocking is the operator's own act."""
    session = db.session()
    role = Role(form.role.data)
    before = snapshot_account(account)
    try:
        saved = provisioning.save_account(
            session,
            username=form.username.data or "",
            role=role,
            password=form.password.data or "",
            company_id=form.company_id.data if role is Role.COMPANY_ADMIN else None,
            active=bool(form.active.data),
            account=account,
        )
    except ProvisioningError as exc:
        refuse(form, exc)
        return None
    if form.unlock.data:
        saved.locked_until = None
        saved.failed_logins = 0
    after = snapshot_account(saved)
    if form.password.data and after is not None:
        after["password"] = "changed"  # never the password itself
    audit("modify" if account else "create", "account", saved.id, before, after)
    session.commit()
    return saved


@bp.route("/accounts/<int:account_id>/delete", methods=["POST"])
@operator_only
def account_delete(account_id: int) -> Response:
    account = get_or_404(Account, account_id)
    session = db.session()
    audit("delete", "account", account.id, snapshot_account(account), None)
    session.delete(account)
    session.commit()
    flash(f"Account {account.username} deleted.", "info")
    return redirect(url_for("admin.accounts"))


# --- DNIS pool -------------------------------------------------------------------------------------


@bp.route("/dnis", methods=["GET", "POST"])
@operator_only
def dnis() -> View:
    session = db.session()
    form = DnisForm()
    if form.validate_on_submit():
        # Stored as written, like bridge.provisioning.load_dnis: it is matched against the called
        # number the gateway sends, which need not be a valid E.164 number (short test ranges, ...).
        number = (form.number.data or "").replace(" ", "").replace("-", "")
        if not _DNIS.match(number):
            form.number.errors.append("digits only, optionally with a leading +")
        else:
            kind = DnisKind(form.kind.data)
            position = int(form.position.data or 0) if kind is DnisKind.POOL else 0
            if session.scalar(select(DnisNumber.id).where(DnisNumber.number == number)):
                form.number.errors.append("already in the pool")
            elif kind is DnisKind.POOL and (
                position < 1
                or session.scalar(select(DnisNumber.id).where(DnisNumber.kind == kind, DnisNumber.position == position))
            ):
                form.position.errors.append("give a free pool position (1 and up)")
            else:
                session.add(DnisNumber(number=number, kind=kind, position=position))
                session.commit()
                flash(f"DNIS {number} added.", "info")
                return redirect(url_for("admin.dnis"))
    rows = session.scalars(scoped(DnisNumber).order_by(DnisNumber.kind, DnisNumber.position)).all()
    counts = select(InstantConference.dnis_id, func.count(InstantConference.id)).group_by(InstantConference.dnis_id)
    used = {dnis_id: count for dnis_id, count in session.execute(counts)}
    return render_template("admin/dnis.html", rows=rows, used=used, form=form, configured=_config().dnis)


@bp.route("/dnis/load", methods=["POST"])
@operator_only
def dnis_load() -> Response:
    session = db.session()
    added = provisioning.load_configured_dnis(session, _config())
    if added:
        audit("load", "dnis", None, None, {"added": added})
    session.commit()
    flash(f"{added} configured numbers added to the pool.", "info")
    return redirect(url_for("admin.dnis"))


@bp.route("/dnis/<int:dnis_id>/delete", methods=["POST"])
@operator_only
def dnis_delete(dnis_id: int) -> Response:
    row = get_or_404(DnisNumber, dnis_id)
    session = db.session()
    if session.scalar(select(func.count(InstantConference.id)).where(InstantConference.dnis_id == row.id)):
        flash(f"{row.number} is assigned to Instant Conferences; it stays.", "error")
        return redirect(url_for("admin.dnis"))
    session.delete(row)
    session.commit()
    flash(f"DNIS {row.number} removed.", "info")
    return redirect(url_for("admin.dnis"))


# --- trunks, billing, status -----------------------------------------------------------------------


@bp.route("/trunks")
@operator_only
def trunks() -> View:
    status = _status()
    live = {t.get("name"): t for t in ((status or {}).get("sip") or {}).get("trunk_groups", [])}
    return render_template("admin/trunks.html", trunks=_config().trunk_group, live=live, reachable=status is not None)


@bp.route("/billing")
@operator_only
def billing() -> View:
    form, start, end, company_id = _range()
    count = db.session().scalar(select(func.count(Cdr.id)).where(*_cdr_conditions(start, end, company_id)))
    return render_template(
        "admin/billing.html", form=form, count=count, args={"start": start, "end": end, "company_id": company_id}
    )


@bp.route("/billing.csv")
@operator_only
def billing_csv() -> Response:
    _form, start, end, company_id = _range()
    return stream_cdr_csv(_cdr_conditions(start, end, company_id), f"billing-{start}-{end}.csv")


def port_rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """Per trunk group and span, the channel cells in order (for the coloured port grid)."""
    rows: list[dict[str, Any]] = []
    for trunk in (status.get("sip") or {}).get("trunk_groups", []):
        spans: dict[int, list[dict[str, Any]]] = {}
        for port in trunk.get("ports", []):
            spans.setdefault(int(port.get("span", 0)), []).append(port)
        for span in sorted(spans):
            cells = sorted(spans[span], key=lambda p: int(p.get("channel", 0)))
            rows.append({"trunk": trunk.get("name", "?"), "span": span, "cells": cells})
    return rows


@bp.route("/status")
@operator_only
def status() -> View:
    status = _status()
    rows = port_rows(status) if status else []
    leg_ids = [c["leg_id"] for r in rows for c in r["cells"] if isinstance(c.get("leg_id"), int)]
    legs = {}
    if leg_ids:
        legs = {leg.id: leg for leg in db.session().scalars(scoped(Leg).where(Leg.id.in_(leg_ids)))}
    return render_template("admin/status.html", status=status, rows=rows, legs=legs, config=_config())
