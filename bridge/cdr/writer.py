"""Builds the denormalised billing record of an ended leg (CONTRACTS §4).

The conference service calls :func:`write_cdr` when a leg ends (and may call it again: one row per leg,
a second call refreshes the same row). The record copies company, moderator and service fields so it
survives later edits and deletions of those rows. When a run ends, :func:`complete_run` stamps the
run's completion time and result on the CDRs already written for it (legs usually end before their run).
The caller owns the transaction: these functions flush, never commit.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String, select, update
from sqlalchemy.orm import Session

from bridge.db.models import Account, Cdr, Company, ConferenceRun, Leg, Room, Subscriber, utcnow


def write_cdr(session: Session, leg: Leg, *, now: dt.datetime | None = None) -> Cdr:
    """Create (or refresh) the CDR of ``leg``; returns it flushed, with its id.

    ``now`` (naive UTC) is the record's ``created_at`` for a new row, its ``updated_at`` for a refreshed one
    (a refreshed CDR whose hour file is already cut goes into a correction file); it defaults to the current
    time. A leg without ``disconnected_at`` is recorded as disconnected at ``now``.
    """
    now = now or utcnow()
    cdr = session.scalars(select(Cdr).where(Cdr.leg_id == leg.id)).one_or_none() if leg.id is not None else None
    if cdr is None:
        cdr = Cdr(created_at=now, leg_id=leg.id)
        session.add(cdr)
    else:
        cdr.updated_at = now
    run = leg.run if leg.run is not None else session.get(ConferenceRun, leg.run_id)
    subscriber = session.get(Subscriber, run.subscriber_id) if run and run.subscriber_id else None
    company_id = run.company_id if run else None
    if company_id is None and subscriber is not None:
        company_id = subscriber.company_id
    if company_id is None and run is not None and run.room_id is not None:
        room = session.get(Room, run.room_id)
        company_id = room.company_id if room else None
    company = session.get(Company, company_id) if company_id is not None else None

    cdr.company_id = company_id
    cdr.company_name = company.name if company else ""
    cdr.subscriber_id = subscriber.id if subscriber else None
    cdr.moderator_ident = _moderator_ident(session, subscriber)
    cdr.moderator_name = subscriber.name if subscriber else ""
    cdr.moderator_phone = subscriber.mobile if subscriber else ""
    if run is not None:
        cdr.ic_id = run.ic_id
        cdr.service_id = run.id
        cdr.service_result = run.result
        cdr.service_type = str(run.service_type)
        cdr.service_subject = run.subject
        cdr.service_started_at = run.started_at
        cdr.service_completed_at = run.ended_at
        cdr.scheduled = run.scheduled
    cdr.direction = leg.direction
    cdr.role = leg.role
    cdr.destination = (leg.called or leg.dnis) if leg.direction == "in" else leg.called
    cdr.cli = leg.calling
    cdr.dnis = leg.dnis
    cdr.called_at = leg.called_at
    cdr.joined_at = leg.joined_at
    cdr.disconnected_at = leg.disconnected_at or now
    cdr.port_id = leg.port_id
    cdr.activation_pin_used = leg.activation_pin_used
    cdr.recording = leg.recorded or bool(run and run.recorded)
    cdr.call_id = leg.call_id
    cdr.cause = leg.cause
    cdr.codec = leg.codec
    cdr.packet_loss = leg.packet_loss
    # Billing (bridge.billing.gate.settle_leg / a refusal before dialling), set on the leg by the service.
    cdr.rate_plan, cdr.rate_prefix, cdr.refusal = leg.rate_plan, leg.rate_prefix, leg.refusal
    cdr.billed_s, cdr.price = leg.billed_s, leg.price
    for name in _TEXT_COLUMNS:  # one printable line per field: see _CONTROLS
        value = getattr(cdr, name)
        if isinstance(value, str) and not value.isprintable():
            setattr(cdr, name, value.translate(_CONTROLS))
    session.flush()
    return cdr


#: A billing field is one printable line: NUL (e.g. from a SIP header) is dropped, other control characters
#: (a CR or LF pasted into a company name...) become a space. ``csv.writer`` would quote an LF but not a lone
#: CR, which strict CSV readers take for the end of the record.
_CONTROLS = {0: None, **{code: " " for code in (*range(1, 32), 127)}}

_TEXT_COLUMNS = tuple(
    column.key for column in Cdr.__table__.columns if isinstance(column.type, String) and column.key != "id"
)


def complete_run(session: Session, run: ConferenceRun, *, now: dt.datetime | None = None) -> int:
    """Copy ``run.ended_at`` / ``run.result`` / ``run.recorded`` onto its CDRs; returns how many rows changed.

    The rows' ``updated_at`` becomes ``now`` (default: the current time), so CDRs already sent get corrected.
    """
    values: dict[str, object] = {
        "service_completed_at": run.ended_at,
        "service_result": run.result,
        "updated_at": now or utcnow(),
    }
    if run.recorded:
        values["recording"] = True
    result = session.execute(update(Cdr).where(Cdr.service_id == run.id).values(**values))
    session.flush()
    return int(getattr(result, "rowcount", 0) or 0)


def _moderator_ident(session: Session, subscriber: Subscriber | None) -> str:
    """The moderator's login name when they have a portal account, else their mobile number."""
    if subscriber is None:
        return ""
    username = session.scalars(
        select(Account.username).where(Account.subscriber_id == subscriber.id).order_by(Account.id).limit(1)
    ).first()
    return username or subscriber.mobile
