"""Company area: subscribers (moderators) CRUD, usage report with charts and CSV, CDRs.

Company admins see their company; the operator sees every company (and can narrow with ``company_id``).
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
from collections.abc import Iterator
from typing import Literal

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user
from sqlalchemy import ColumnElement, Select, select
from werkzeug.wrappers import Response

from bridge import provisioning
from bridge.cdr import export as cdr_export
from bridge.cdr import reports as cdr_reports
from bridge.config import Config
from bridge.db.models import Account, Cdr, Company, Role, Subscriber, SubscriberStatus
from bridge.provisioning import ProvisioningError
from bridge.provisioning.audit import snapshot_subscriber
from web import charts, db, reports
from web.clock import utc_now
from web.forms import RangeForm, SubscriberForm, refuse
from web.portal_audit import audit
from web.security import STAFF, roles_required
from web.tenancy import current_scope, get_or_404, report_scope, scoped

bp = Blueprint("company", __name__, url_prefix="/company")

View = str | Response | tuple[str, int]


def _config() -> Config:
    config: Config = current_app.config["BRIDGE"]
    return config


def _company_choices() -> list[tuple[int, str]]:
    return [(c.id, c.name) for c in db.session().scalars(scoped(Company).order_by(Company.name))]


# --- reports ---------------------------------------------------------------------------------------


def _range() -> tuple[RangeForm, dt.date, dt.date, int]:
    form = RangeForm(request.args)
    form.company_id.choices = [(0, "all companies"), *_company_choices()]
    today = utc_now().date()
    form.validate()  # fills each field's errors; a bad field falls back to its default, the rest still count
    start = form.start.data if form.start.data and not form.start.errors else today - dt.timedelta(days=29)
    end = form.end.data if form.end.data and not form.end.errors else today
    if end < start:
        start, end = end, start
    if (end - start).days > 366:
        start = end - dt.timedelta(days=366)
    form.start.data, form.end.data = start, end
    company_id = form.company_id.data if isinstance(form.company_id.data, int) else 0
    return form, start, end, company_id


def _period(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """``[start 00:00, end+1 00:00)`` in naive UTC, on ``Cdr.disconnected_at`` like ``bridge.cdr.reports``."""
    return dt.datetime.combine(start, dt.time()), dt.datetime.combine(end + dt.timedelta(days=1), dt.time())


def _cdr_conditions(start: dt.date, end: dt.date, company_id: int) -> list[ColumnElement[bool]]:
    begin, stop = _period(start, end)
    conditions = [current_scope().condition(Cdr), Cdr.disconnected_at >= begin, Cdr.disconnected_at < stop]
    if company_id:
        conditions.append(Cdr.company_id == company_id)
    return conditions


def _cdrs(start: dt.date, end: dt.date, company_id: int) -> Select[Cdr]:
    """The CDRs of the period in the current user's scope, as ORM rows (pages and charts)."""
    return select(Cdr).where(*_cdr_conditions(start, end, company_id)).order_by(Cdr.disconnected_at, Cdr.id)


def usage_rows(start: dt.date, end: dt.date, company_id: int) -> list[cdr_reports.ModeratorUsage]:
    args = report_scope(company_id)
    if args is None:
        return []
    begin, stop = _period(start, end)
    return cdr_reports.usage_by_moderator(db.session(), start=begin, end=stop, **args)


def daily(
    start: dt.date, end: dt.date, company_id: int, *, by: str, subscriber_id: int | None = None
) -> list[cdr_reports.DailyMinutes]:
    """``bridge.cdr.reports.minutes_per_day`` in the current user's scope (aggregated in SQL)."""
    args = report_scope(company_id)
    if args is None:
        return []
    if subscriber_id is not None:
        args["subscriber_id"] = subscriber_id  # the caller checked it through get_or_404(Subscriber, ...)
    begin, stop = _period(start, end)
    key: Literal["company", "moderator"] = "company" if by == "company" else "moderator"
    return cdr_reports.minutes_per_day(
        db.session(), start=begin, end=stop, by=key, company_id=args["company_id"], subscriber_id=args["subscriber_id"]
    )


def stream_cdr_csv(conditions: list[ColumnElement[bool]], name: str) -> Response:
    """CDRs as CSV in the CDR-file format (``bridge.cdr.export``), streamed in chunks from the database."""
    session = db.session()
    stmt = cdr_export.cdr_select(*conditions)

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        cdr_export.write_csv(iter(()), buffer)  # the header
        rows = cdr_export.stream_rows(session, stmt, chunk=1000)
        while True:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if not cdr_export.write_csv(itertools.islice(rows, 1000), buffer, header=False):
                return

    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _args(start: dt.date, end: dt.date, company_id: int) -> dict[str, str | int]:
    return {"start": start.isoformat(), "end": end.isoformat(), "company_id": company_id}


@bp.route("/")
@roles_required(*STAFF)
def dashboard() -> View:
    form, start, end, company_id = _range()
    by_moderator = daily(start, end, company_id, by="moderator")
    by_company = daily(start, end, company_id, by="company")
    return render_template(
        "company/dashboard.html",
        form=form,
        per_day=charts.bar_chart(reports.days(start, end, reports.per_day(by_company)), title="Minutes per day"),
        per_moderator=charts.bar_chart(reports.per_key(by_moderator), title="Minutes per moderator"),
        per_company=charts.bar_chart(reports.per_key(by_company), title="Minutes per company"),
    )


@bp.route("/usage")
@roles_required(*STAFF)
def usage() -> View:
    form, start, end, company_id = _range()
    per_day = reports.days(start, end, reports.per_day(daily(start, end, company_id, by="company")))
    return render_template(
        "company/usage.html",
        form=form,
        rows=usage_rows(start, end, company_id),
        args=_args(start, end, company_id),
        chart=charts.bar_chart(per_day, title="Minutes per day"),
    )


@bp.route("/usage.csv")
@roles_required(*STAFF)
def usage_csv() -> Response:
    _form, start, end, company_id = _range()
    return _csv(reports.usage_csv(usage_rows(start, end, company_id)), f"usage-{start}-{end}.csv")


@bp.route("/cdrs")
@roles_required(*STAFF)
def cdrs() -> View:
    form, start, end, company_id = _range()
    subscriber_id = request.args.get("subscriber_id", type=int)
    stmt = _cdrs(start, end, company_id)
    if subscriber_id:
        stmt = stmt.where(Cdr.subscriber_id == subscriber_id)
    rows = db.session().scalars(stmt.limit(1000)).all()
    return render_template("company/cdrs.html", form=form, cdrs=rows, args=_args(start, end, company_id))


@bp.route("/cdrs.csv")
@roles_required(*STAFF)
def cdrs_csv() -> Response:
    _form, start, end, company_id = _range()
    return stream_cdr_csv(_cdr_conditions(start, end, company_id), f"cdr-{start}-{end}.csv")


def _csv(text: str, name: str) -> Response:
    return Response(text, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- subscribers (moderators) ----------------------------------------------------------------------


@bp.route("/subscribers")
@roles_required(*STAFF)
def subscribers() -> View:
    rows = (
        db.session()
        .scalars(scoped(Subscriber).where(Subscriber.status != SubscriberStatus.DELETED).order_by(Subscriber.name))
        .all()
    )
    return render_template("company/subscribers.html", subscribers=rows)


@bp.route("/subscribers/new", methods=["GET", "POST"])
@roles_required(*STAFF)
def subscriber_new() -> View:
    form = SubscriberForm()
    form.company_id.choices = _company_choices()
    if current_user.role is Role.COMPANY_ADMIN and request.method == "GET":
        form.company_id.data = current_user.company_id
    if form.validate_on_submit():
        if _save_subscriber(form, None):
            flash(f"Subscriber {(form.name.data or '').strip()} added.", "info")
            return redirect(url_for("company.subscribers"))
    return render_template("form.html", form=form, title="New subscriber")


@bp.route("/subscribers/<int:sid>/edit", methods=["GET", "POST"])
@roles_required(*STAFF)
def subscriber_edit(sid: int) -> View:
    subscriber = get_or_404(Subscriber, sid)
    if subscriber.status == SubscriberStatus.DELETED:
        abort(404)
    account = db.session().scalar(scoped(Account).where(Account.subscriber_id == sid))
    form = SubscriberForm(obj=subscriber)
    form.company_id.choices = _company_choices()
    if request.method == "GET":
        form.status.data = subscriber.status.value
        form.username.data = account.username if account else ""
    if form.validate_on_submit() and _save_subscriber(form, subscriber):
        flash(f"Subscriber {subscriber.name} saved.", "info")
        return redirect(url_for("company.subscribers"))
    return render_template("form.html", form=form, title=f"Edit subscriber {subscriber.name}")


def _save_subscriber(form: SubscriberForm, subscriber: Subscriber | None) -> bool:
    """Save through the provisioning core (mobile, login and password rules, the login found there)."""
    session = db.session()
    allowed = {c for c, _ in form.company_id.choices}
    if form.company_id.data not in allowed:  # the tenant scope: only the user's companies are choices
        form.company_id.errors.append("choose a company")
        return False
    before = snapshot_subscriber(session, subscriber)
    try:
        saved, _login = provisioning.save_subscriber(
            session,
            company_id=form.company_id.data,
            name=form.name.data or "",
            mobile=form.mobile.data or "",
            default_country=_config().numbering.default_country,
            status=SubscriberStatus(form.status.data),
            prepaid=bool(form.prepaid.data),
            username=form.username.data or "",
            password=form.password.data or "",
            subscriber=subscriber,
        )
    except ProvisioningError as exc:
        refuse(form, exc)
        return False
    after = snapshot_subscriber(session, saved)
    if form.password.data and after is not None:
        after["password"] = "changed"  # never the password itself
    audit("modify" if subscriber else "create", "subscriber", saved.id, before, after)
    session.commit()
    return True


@bp.route("/subscribers/<int:sid>/delete", methods=["POST"])
@roles_required(*STAFF)
def subscriber_delete(sid: int) -> Response:
    subscriber = get_or_404(Subscriber, sid)
    name = subscriber.name
    session = db.session()
    before = snapshot_subscriber(session, subscriber)
    try:
        provisioning.delete_subscriber(session, subscriber, utc_now())
    except ProvisioningError:
        abort(404)  # already deleted: gone for the portal too
    audit("delete", "subscriber", sid, before, None)
    session.commit()
    flash(f"Subscriber {name} deleted.", "info")
    return redirect(url_for("company.subscribers"))
