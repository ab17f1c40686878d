"""Operator pages for the machine APIs, on the admin blueprint: REST API tokens (create, revoke; the secret
is shown once) and the audit log of API changes (who, what, when, before/after), with a CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from flask import flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import Select, select
from werkzeug.wrappers import Response
from wtforms import IntegerField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from bridge.api.tokens import TokenError, create_token, list_tokens, revoke_token
from bridge.db.models import AuditEntry, Company, TokenScope
from web import db
from web.admin import View, bp, operator_only
from web.clock import utc_now

AUDIT_PAGE = 200
AUDIT_COLUMNS = ("id", "at", "actor", "channel", "action", "object_type", "object_id", "transaction", "before", "after")


class TokenForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[DataRequired(), Length(max=80)])
    scope = SelectField("Scope", choices=[SelectChoice(s.value, s.value) for s in TokenScope])
    company_id = SelectField("Company (company scope)", coerce=int, default=0)
    subscriber_id = IntegerField("Subscriber id (subscriber scope)", validators=[Optional()])


@bp.route("/tokens", methods=["GET", "POST"])
@operator_only
def tokens() -> View:
    session = db.session()
    form = TokenForm()
    companies = session.scalars(select(Company).order_by(Company.name))
    form.company_id.choices = [SelectChoice(0, "(none)")] + [SelectChoice(c.id, c.name) for c in companies]
    secret = ""
    if form.validate_on_submit():
        try:
            token, secret = create_token(
                session, name=form.name.data or "", scope=TokenScope(form.scope.data),
                company_id=form.company_id.data or None, subscriber_id=form.subscriber_id.data,
                created_by=f"portal:{getattr(request, 'remote_addr', '')}", now=utc_now(),
            )  # fmt: skip
        except TokenError as exc:
            session.rollback()
            getattr(form, exc.field + "_id", form.name).errors.append(exc.message)
        else:
            session.commit()
            flash(f"Token {token.name} created: copy the secret now, it is not shown again.", "info")
    return render_template("admin/tokens.html", form=form, tokens=list_tokens(session), secret=secret)


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@operator_only
def token_revoke(token_id: int) -> Response:
    session = db.session()
    try:
        revoke_token(session, token_id, utc_now())
    except TokenError as exc:
        flash(exc.message, "error")
    else:
        session.commit()
        flash(f"Token {token_id} revoked.", "info")
    return redirect(url_for("admin.tokens"))


def _audit_query() -> Select[AuditEntry]:
    stmt = select(AuditEntry)
    for name in ("actor", "object_type", "action", "channel"):
        value = request.args.get(name, "").strip()
        if value:
            stmt = stmt.where(getattr(AuditEntry, name) == value)
    object_id = request.args.get("object_id", "").strip()
    if object_id.isdigit():
        stmt = stmt.where(AuditEntry.object_id == int(object_id))
    return stmt


@bp.route("/audit")
@operator_only
def audit() -> View:
    rows = db.session().scalars(_audit_query().order_by(AuditEntry.id.desc()).limit(AUDIT_PAGE)).all()
    return render_template("admin/audit.html", entries=rows, args=request.args, limit=AUDIT_PAGE)


@bp.route("/audit.csv")
@operator_only
def audit_csv() -> Response:
    session = db.session()
    stmt = _audit_query().order_by(AuditEntry.id)

    def generate() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(AUDIT_COLUMNS)
        for entry in session.scalars(stmt.execution_options(yield_per=500)):
            writer.writerow([getattr(entry, c) if c != "at" else entry.at.isoformat() for c in AUDIT_COLUMNS])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
        yield out.getvalue()

    headers = {"Content-Disposition": 'attachment; filename="audit.csv"'}
    return Response(generate(), mimetype="text/csv", headers=headers)
