"""Subscriber area: users, groups, Instant Conferences, history and recordings, live view, help.

Every page is reachable by the subscriber for their own data and by company admins and the
operator for the subscribers in their scope (URLs carry the subscriber id; the tenant filter
turns everything else into 404).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, send_file, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response

from bridge import provisioning
from bridge.config import Config
from bridge.control_client import ControlRequestError, EngineUnreachable
from bridge.db.models import (
    ConferenceRun,
    Contact,
    DnisKind,
    DnisNumber,
    Group,
    GroupMember,
    IcMember,
    InstantConference,
    Leg,
    Recording,
    Subscriber,
    SubscriberStatus,
)
from bridge.phone import PhoneError, to_e164
from bridge.provisioning import ProvisioningError
from bridge.provisioning.audit import snapshot_contact, snapshot_group, snapshot_ic
from web import charts, db, reports
from web.clock import utc_now
from web.company import daily
from web.forms import ContactForm, DialForm, GroupForm, IcForm
from web.live import control
from web.portal_audit import audit
from web.security import ALL_ROLES, login_required, roles_required
from web.tenancy import get_or_404, scoped, visible_ids

bp = Blueprint("subscriber", __name__)

View = str | Response | tuple[str, int] | tuple[Response, int]


def _config() -> Config:
    config: Config = current_app.config["BRIDGE"]
    return config


def _subscriber(sid: int) -> Subscriber:
    subscriber = get_or_404(Subscriber, sid)
    if subscriber.status == SubscriberStatus.DELETED:
        abort(404)
    return subscriber


# --- home and help ---------------------------------------------------------------------------------


@bp.route("/s/<int:sid>/")
@roles_required(*ALL_ROLES)
def home(sid: int) -> View:
    subscriber = _subscriber(sid)
    session = db.session()
    counts = {
        "users": session.scalar(
            select(func.count()).select_from(scoped(Contact).where(Contact.subscriber_id == sid).subquery())
        ),
        "groups": session.scalar(
            select(func.count()).select_from(scoped(Group).where(Group.subscriber_id == sid).subquery())
        ),
        "ics": session.scalar(
            select(func.count()).select_from(
                scoped(InstantConference).where(InstantConference.subscriber_id == sid).subquery()
            )
        ),
    }
    return render_template("subscriber/home.html", subscriber=subscriber, counts=counts)


@bp.route("/help")
@login_required
def help_page() -> View:
    return render_template("help.html", config=_config())


# --- users (contacts) ------------------------------------------------------------------------------


@bp.route("/s/<int:sid>/users")
@roles_required(*ALL_ROLES)
def users(sid: int) -> View:
    subscriber = _subscriber(sid)
    rows = db.session().scalars(scoped(Contact).where(Contact.subscriber_id == sid).order_by(Contact.nickname)).all()
    return render_template("subscriber/users.html", subscriber=subscriber, users=rows)


@bp.route("/s/<int:sid>/users/new", methods=["GET", "POST"])
@roles_required(*ALL_ROLES)
def user_new(sid: int) -> View:
    subscriber = _subscriber(sid)
    form = ContactForm()
    if form.validate_on_submit():
        contact = form.save(_config(), subscriber.id, None)
        if contact is not None:
            flash(f"User {contact.nickname} added.", "info")
            return redirect(url_for("subscriber.users", sid=sid))
    return render_template("form.html", form=form, title="New user", subscriber=subscriber)


@bp.route("/users/<int:contact_id>/edit", methods=["GET", "POST"])
@roles_required(*ALL_ROLES)
def user_edit(contact_id: int) -> View:
    contact = get_or_404(Contact, contact_id)
    form = ContactForm(obj=contact)
    if form.validate_on_submit() and form.save(_config(), contact.subscriber_id, contact) is not None:
        flash(f"User {contact.nickname} saved.", "info")
        return redirect(url_for("subscriber.users", sid=contact.subscriber_id))
    return render_template("form.html", form=form, title=f"Edit user {contact.nickname}", subscriber=contact.subscriber)


@bp.route("/users/<int:contact_id>/delete", methods=["POST"])
@roles_required(*ALL_ROLES)
def user_delete(contact_id: int) -> View:
    contact = get_or_404(Contact, contact_id)
    sid = contact.subscriber_id
    session = db.session()
    audit("delete", "contact", contact.id, snapshot_contact(contact), None)
    provisioning.delete_contact(session, contact)
    session.commit()
    flash(f"User {contact.nickname} deleted.", "info")
    return redirect(url_for("subscriber.users", sid=sid))


# --- groups ----------------------------------------------------------------------------------------


def _contact_choices(sid: int) -> list[tuple[int, str]]:
    contacts = db.session().scalars(scoped(Contact).where(Contact.subscriber_id == sid).order_by(Contact.nickname))
    return [(c.id, f"{c.nickname} ({c.phone})") for c in contacts]


def _group_choices(sid: int, exclude: int | None = None) -> list[tuple[int, str]]:
    groups = db.session().scalars(scoped(Group).where(Group.subscriber_id == sid).order_by(Group.name))
    return [(g.id, g.name) for g in groups if g.id != exclude]


@bp.route("/s/<int:sid>/groups")
@roles_required(*ALL_ROLES)
def groups(sid: int) -> View:
    subscriber = _subscriber(sid)
    members = selectinload(Group.members)
    stmt = (
        scoped(Group)
        .where(Group.subscriber_id == sid)
        .options(members.selectinload(GroupMember.contact), members.selectinload(GroupMember.member_group))
        .order_by(Group.name)
    )
    rows = db.session().scalars(stmt).all()
    return render_template("subscriber/groups.html", subscriber=subscriber, groups=rows)


@bp.route("/s/<int:sid>/groups/new", methods=["GET", "POST"])
@roles_required(*ALL_ROLES)
def group_new(sid: int) -> View:
    subscriber = _subscriber(sid)
    form = GroupForm()
    form.contacts.choices = _contact_choices(sid)
    if form.validate_on_submit():
        group = form.save(_config(), sid, None)
        if group is not None:
            flash(f"Group {group.name} added.", "info")
            return redirect(url_for("subscriber.groups", sid=sid))
    return render_template("form.html", form=form, title="New group", subscriber=subscriber)


@bp.route("/groups/<int:group_id>/edit", methods=["GET", "POST"])
@roles_required(*ALL_ROLES)
def group_edit(group_id: int) -> View:
    group = get_or_404(Group, group_id)
    form = GroupForm(obj=group)
    form.contacts.choices = _contact_choices(group.subscriber_id)
    if request.method == "GET":
        form.contacts.data = [m.contact_id for m in group.members if m.contact_id is not None]
        form.numbers.data = "\n".join(m.phone for m in group.members if m.phone)
    if form.validate_on_submit() and form.save(_config(), group.subscriber_id, group) is not None:
        flash(f"Group {group.name} saved.", "info")
        return redirect(url_for("subscriber.groups", sid=group.subscriber_id))
    return render_template("form.html", form=form, title=f"Edit group {group.name}", subscriber=group.subscriber)


@bp.route("/groups/<int:group_id>/delete", methods=["POST"])
@roles_required(*ALL_ROLES)
def group_delete(group_id: int) -> View:
    group = get_or_404(Group, group_id)
    sid = group.subscriber_id
    session = db.session()
    audit("delete", "group", group.id, snapshot_group(group), None)
    provisioning.delete_group(session, group)
    session.commit()
    flash(f"Group {group.name} deleted.", "info")
    return redirect(url_for("subscriber.groups", sid=sid))


# --- Instant Conferences ---------------------------------------------------------------------------


@bp.route("/s/<int:sid>/ics")
@roles_required(*ALL_ROLES)
def ics(sid: int) -> View:
    subscriber = _subscriber(sid)
    stmt = (
        scoped(InstantConference)
        .where(InstantConference.subscriber_id == sid)
        .options(selectinload(InstantConference.dnis))
        .order_by(InstantConference.slot)
    )
    rows = db.session().scalars(stmt).all()
    counting = (
        select(IcMember.ic_id, func.count(IcMember.id))
        .where(IcMember.ic_id.in_([ic.id for ic in rows]))
        .group_by(IcMember.ic_id)
    )
    members = {ic_id: count for ic_id, count in db.session().execute(counting)}
    return render_template(
        "subscriber/ics.html",
        subscriber=subscriber,
        ics=rows,
        members=members,
        limit=_config().conference.max_ics_per_subscriber,
    )


@bp.route("/s/<int:sid>/ics/new", methods=["GET", "POST"])
@roles_required(*ALL_ROLES)
def ic_new(sid: int) -> View:
    subscriber = _subscriber(sid)
    form = IcForm()
    form.contacts.choices = _contact_choices(sid)
    form.groups.choices = _group_choices(sid)
    if request.method == "GET":
        form.participant_sms.data = _config().conference.participant_sms
    if form.validate_on_submit():
        session = db.session()
        try:
            ic = provisioning.create_ic(session, subscriber, _config(), form.name.data or "")
        except ProvisioningError as exc:
            session.rollback()
            flash(exc.message, "error")
            return render_template("form.html", form=form, title="New Instant Conference", subscriber=subscriber), 409
        audit("create", "instant_conference", ic.id, None, snapshot_ic(ic))  # committed (or not) with its members
        if form.save(_config(), ic):
            flash(f"Instant Conference {ic.slot} created.", "info")
            return redirect(url_for("subscriber.ic_detail", ic_id=ic.id))
    return render_template("form.html", form=form, title="New Instant Conference", subscriber=subscriber)


@bp.route("/ics/<int:ic_id>")
@roles_required(*ALL_ROLES)
def ic_detail(ic_id: int) -> View:
    ic = get_or_404(InstantConference, ic_id)
    common = db.session().scalar(select(DnisNumber).where(DnisNumber.kind == DnisKind.COMMON))
    return render_template("subscriber/ic.html", ic=ic, subscriber=ic.subscriber, common=common)


@bp.route("/ics/<int:ic_id>/edit", methods=["GET", "POST"])
@roles_required(*ALL_ROLES)
def ic_edit(ic_id: int) -> View:
    ic = get_or_404(InstantConference, ic_id)
    form = IcForm(obj=ic)
    form.contacts.choices = _contact_choices(ic.subscriber_id)
    form.groups.choices = _group_choices(ic.subscriber_id)
    if request.method == "GET":
        form.contacts.data = [m.contact_id for m in ic.members if m.contact_id is not None]
        form.groups.data = [m.group_id for m in ic.members if m.group_id is not None]
        form.numbers.data = "\n".join(m.phone for m in ic.members if m.phone)
    if form.validate_on_submit() and form.save(_config(), ic):
        flash(f"Instant Conference {ic.slot} saved.", "info")
        return redirect(url_for("subscriber.ic_detail", ic_id=ic.id))
    return render_template("form.html", form=form, title=f"Edit Instant Conference {ic.slot}", subscriber=ic.subscriber)


@bp.route("/ics/<int:ic_id>/delete", methods=["POST"])
@roles_required(*ALL_ROLES)
def ic_delete(ic_id: int) -> View:
    ic = get_or_404(InstantConference, ic_id)
    sid = ic.subscriber_id
    session = db.session()
    audit("delete", "instant_conference", ic.id, snapshot_ic(ic), None)
    session.delete(ic)
    try:
        session.commit()
    except IntegrityError:  # conference runs refer to it: history must survive
        session.rollback()
        flash("This Instant Conference has history; edit it instead of deleting it.", "error")
        return redirect(url_for("subscriber.ic_detail", ic_id=ic_id))
    flash("Instant Conference deleted.", "info")
    return redirect(url_for("subscriber.ics", sid=sid))


@bp.route("/ics/<int:ic_id>/pins", methods=["POST"])
@roles_required(*ALL_ROLES)
def ic_regenerate(ic_id: int) -> View:
    ic = get_or_404(InstantConference, ic_id)
    session = db.session()
    try:
        provisioning.regenerate_pins(session, ic, _config())
    except ProvisioningError as exc:
        session.rollback()
        flash(exc.message, "error")
    else:
        audit("regenerate_pins", "instant_conference", ic.id, None, {"pins": "regenerated"})
        session.commit()
        flash("New PINs generated.", "info")
    return redirect(url_for("subscriber.ic_detail", ic_id=ic_id))


@bp.route("/ics/<int:ic_id>/launch", methods=["POST"])
@roles_required(*ALL_ROLES)
def ic_launch(ic_id: int) -> View:
    ic = get_or_404(InstantConference, ic_id)
    try:
        conference = control().launch_ic(ic.id)
    except EngineUnreachable:
        flash("The engine is unreachable: the conference was not launched.", "error")
        return redirect(url_for("subscriber.ic_detail", ic_id=ic_id))
    except ControlRequestError as exc:
        flash(f"The engine refused the launch: {exc.message}", "error")
        return redirect(url_for("subscriber.ic_detail", ic_id=ic_id))
    flash("Conference launched.", "info")
    run_id = conference.get("run_id")
    if isinstance(run_id, int):
        return redirect(url_for("subscriber.live_view", run_id=run_id))
    return redirect(url_for("subscriber.live_list"))


# --- history, service reports, recordings ----------------------------------------------------------


@bp.route("/s/<int:sid>/history")
@roles_required(*ALL_ROLES)
def history(sid: int) -> View:
    subscriber = _subscriber(sid)
    runs = (
        db.session()
        .scalars(
            scoped(ConferenceRun)
            .where(ConferenceRun.subscriber_id == sid)
            .order_by(ConferenceRun.started_at.desc())
            .limit(500)
        )
        .all()
    )
    today = utc_now().date()
    start = today - dt.timedelta(days=29)
    rows = daily(start, today, 0, by="moderator", subscriber_id=sid)
    chart = charts.bar_chart(reports.days(start, today, reports.per_day(rows)), title="Minutes per day (last 30 days)")
    return render_template("subscriber/history.html", subscriber=subscriber, runs=runs, chart=chart)


def _report(run: ConferenceRun) -> list[reports.ReportLine]:
    legs = db.session().scalars(scoped(Leg).where(Leg.run_id == run.id).order_by(Leg.id)).all()
    names: dict[str, str] = {}
    if run.subscriber_id is not None:
        for contact in db.session().scalars(scoped(Contact).where(Contact.subscriber_id == run.subscriber_id)):
            names.setdefault(contact.phone, contact.nickname)
        owner = db.session().get(Subscriber, run.subscriber_id)
        if owner is not None:
            names[owner.mobile] = owner.name
    return reports.service_report(legs, names)


@bp.route("/runs/<int:run_id>")
@roles_required(*ALL_ROLES)
def run_report(run_id: int) -> View:
    run = get_or_404(ConferenceRun, run_id)
    recordings = db.session().scalars(scoped(Recording).where(Recording.run_id == run.id)).all()
    return render_template("subscriber/run.html", run=run, lines=_report(run), recordings=recordings)


@bp.route("/runs/<int:run_id>/report.csv")
@roles_required(*ALL_ROLES)
def run_report_csv(run_id: int) -> Response:
    run = get_or_404(ConferenceRun, run_id)
    return _csv_response(reports.service_report_csv(_report(run)), f"conference-{run.id}.csv")


def _csv_response(text: str, name: str) -> Response:
    return Response(text, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/s/<int:sid>/recordings")
@roles_required(*ALL_ROLES)
def recordings(sid: int) -> View:
    subscriber = _subscriber(sid)
    runs = select(ConferenceRun.id).where(ConferenceRun.subscriber_id == sid)
    rows = (
        db.session()
        .scalars(scoped(Recording).where(Recording.run_id.in_(runs)).order_by(Recording.started_at.desc()))
        .all()
    )
    return render_template("subscriber/recordings.html", subscriber=subscriber, recordings=rows)


def _recording_file(recording: Recording) -> Path:
    """The recording's file, only if it lies under the data directory (never serve arbitrary paths)."""
    base = _config().data_path.resolve()
    path = Path(recording.path)
    path = (path if path.is_absolute() else base / path).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        abort(404)
    return path


@bp.route("/recordings/<int:rec_id>/audio")
@roles_required(*ALL_ROLES)
def recording_audio(rec_id: int) -> Response:
    path = _recording_file(get_or_404(Recording, rec_id))
    return send_file(path, mimetype="audio/wav", conditional=True)


@bp.route("/recordings/<int:rec_id>/download")
@roles_required(*ALL_ROLES)
def recording_download(rec_id: int) -> Response:
    path = _recording_file(get_or_404(Recording, rec_id))
    return send_file(path, mimetype="audio/wav", as_attachment=True, download_name=f"recording-{rec_id}.wav")


# --- live conferences ------------------------------------------------------------------------------


def visible_conferences() -> tuple[list[dict[str, Any]], bool]:
    """The engine's running conferences the current user may see, and whether the engine answered."""
    try:
        conferences = control().conferences()
    except EngineUnreachable:
        return [], False
    ids = [c["run_id"] for c in conferences if isinstance(c.get("run_id"), int)]
    allowed = visible_ids(ConferenceRun, ids)
    return [c for c in conferences if c.get("run_id") in allowed], True


@bp.route("/live/")
@roles_required(*ALL_ROLES)
def live_list() -> View:
    conferences, reachable = visible_conferences()
    return render_template("live_list.html", conferences=conferences, reachable=reachable)


@bp.route("/live/<int:run_id>")
@roles_required(*ALL_ROLES)
def live_view(run_id: int) -> View:
    run = get_or_404(ConferenceRun, run_id)
    conference: dict[str, Any] | None = None
    reachable = True
    try:
        conference = control().conference(run.id)
    except EngineUnreachable:
        reachable = False
    except ControlRequestError:
        conference = None
    return render_template("live.html", run=run, conference=conference, reachable=reachable, dial_form=DialForm())


def _live_action(run_id: int, call: str, *args: Any) -> View:
    run = get_or_404(ConferenceRun, run_id)
    wants_json = request.accept_mimetypes.best == "application/json"
    try:
        getattr(control(), call)(run.id, *args)
    except EngineUnreachable:
        message, status = "engine unreachable", 503
    except ControlRequestError as exc:
        message, status = exc.message, exc.status if exc.status in (400, 404, 409) else 502
    else:
        if wants_json:
            return jsonify({"ok": True}), 200
        return redirect(url_for("subscriber.live_view", run_id=run.id))
    if wants_json:
        return jsonify({"error": message}), status
    flash(f"Not done: {message}", "error")
    return redirect(url_for("subscriber.live_view", run_id=run.id))


def _flag(name: str) -> bool:
    return request.form.get(name, "") in ("1", "true", "on")


@bp.route("/live/<int:run_id>/end", methods=["POST"])
@roles_required(*ALL_ROLES)
def live_end(run_id: int) -> View:
    return _live_action(run_id, "end")


@bp.route("/live/<int:run_id>/recording", methods=["POST"])
@roles_required(*ALL_ROLES)
def live_recording(run_id: int) -> View:
    return _live_action(run_id, "recording", _flag("on"))


@bp.route("/live/<int:run_id>/lock", methods=["POST"])
@roles_required(*ALL_ROLES)
def live_lock(run_id: int) -> View:
    return _live_action(run_id, "lock", _flag("locked"))


@bp.route("/live/<int:run_id>/dial", methods=["POST"])
@roles_required(*ALL_ROLES)
def live_dial(run_id: int) -> View:
    get_or_404(ConferenceRun, run_id)
    form = DialForm()
    try:
        number = to_e164(form.number.data or "", _config().numbering.default_country)
    except PhoneError as exc:
        if request.accept_mimetypes.best == "application/json":
            return jsonify({"error": str(exc)}), 400
        flash(str(exc), "error")
        return redirect(url_for("subscriber.live_view", run_id=run_id))
    return _live_action(run_id, "dial", number)


def _leg(run_id: int, leg_id: int) -> Leg:
    leg = get_or_404(Leg, leg_id)
    if leg.run_id != run_id:
        abort(404)
    return leg


@bp.route("/live/<int:run_id>/legs/<int:leg_id>/mute", methods=["POST"])
@roles_required(*ALL_ROLES)
def live_mute(run_id: int, leg_id: int) -> View:
    leg = _leg(run_id, leg_id)
    return _live_action(run_id, "mute", leg.id, _flag("muted"))


@bp.route("/live/<int:run_id>/legs/<int:leg_id>/kick", methods=["POST"])
@roles_required(*ALL_ROLES)
def live_kick(run_id: int, leg_id: int) -> View:
    leg = _leg(run_id, leg_id)
    return _live_action(run_id, "kick", leg.id)
