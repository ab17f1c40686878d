"""Usage aggregates over CDRs, for the portal's reports and the nightly summary.

All periods are half-open ``[start, end)`` in naive UTC on ``Cdr.disconnected_at`` (the moment a leg is
billed). Connected time is joined -> disconnected; ``minutes`` is the sum over legs of each leg's time
rounded up to a whole minute (as in the CDR files), ``seconds`` the exact sum rounded to whole seconds.
An "event" is one conference run (distinct service id). Scope a query to one company with ``company_id``
(the portal's tenant filter) and/or one moderator with ``subscriber_id``. Aggregation happens in SQL
(SQLite and PostgreSQL); nothing here loads one object per CDR.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Float, Integer, and_, case, cast, func, literal_column, select
from sqlalchemy.orm import Session

from bridge.cdr.csvformat import zone
from bridge.db.models import Cdr, Company, Contact


@dataclass(frozen=True)
class ModeratorUsage:
    """One row of the per-moderator report."""

    company: str
    subscriber_id: int | None
    moderator_ident: str
    moderator_name: str
    service_type: str
    events: int
    legs: int
    seconds: int
    minutes: int


@dataclass(frozen=True)
class ConferenceLegUsage:
    """One leg in the per-conference report (times naive UTC; render with ``timezone``)."""

    service_id: int | None
    service_type: str
    subject: str
    caller: str
    """The party's number: the calling number of a dial-in leg, the dialled number of a dial-out leg."""
    name: str
    """The party's name from the moderator's contacts (the moderator's own name on their leg), or ""."""
    direction: str
    role: str
    called_at: dt.datetime | None
    joined_at: dt.datetime | None
    disconnected_at: dt.datetime | None
    seconds: int
    minutes: int
    timezone: str


@dataclass(frozen=True)
class DailyMinutes:
    """Usage of one key (company name or moderator ident) on one local day, for charts."""

    day: dt.date
    key: str
    events: int
    seconds: int
    minutes: int


def _seconds(session: Session) -> ColumnElement[Any]:
    """Connected seconds of a CDR as a SQL expression (0 when it never joined), dialect by dialect."""
    positive = and_(Cdr.joined_at.is_not(None), Cdr.disconnected_at > Cdr.joined_at)
    # half-up rounding to whole seconds, as csvformat.duration_s does: floor(x + 0.5)
    if session.get_bind().dialect.name == "sqlite":
        raw: ColumnElement[Any] = (func.julianday(Cdr.disconnected_at) - func.julianday(Cdr.joined_at)) * 86400.0
        rounded = cast(raw + 0.5, Integer)  # SQLite's CAST truncates, i.e. floors a positive number
    else:
        raw = func.extract("epoch", Cdr.disconnected_at - Cdr.joined_at)
        rounded = cast(func.floor(cast(raw, Float) + 0.5), Integer)  # PostgreSQL's CAST would round
    return case((positive, rounded), else_=0)


def _minutes(seconds: ColumnElement[Any]) -> ColumnElement[Any]:
    return (seconds + 59) // 60  # integer (floor) division: ceil to whole minutes


def _scope(
    start: dt.datetime, end: dt.datetime, company_id: int | None, subscriber_id: int | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Cdr.disconnected_at >= start, Cdr.disconnected_at < end]
    if company_id is not None:
        conditions.append(Cdr.company_id == company_id)
    if subscriber_id is not None:
        conditions.append(Cdr.subscriber_id == subscriber_id)
    return conditions


def usage_by_moderator(
    session: Session,
    *,
    start: dt.datetime,
    end: dt.datetime,
    company_id: int | None = None,
    subscriber_id: int | None = None,
) -> list[ModeratorUsage]:
    """Per company, moderator and service type: events, legs, total seconds and minutes.

    Legs with no moderator (e.g. plain meet-me rooms) are grouped under an empty moderator.
    Ordered by company, moderator name, service type.
    """
    seconds = _seconds(session)
    stmt = (
        select(
            Cdr.company_name,
            Cdr.subscriber_id,
            Cdr.moderator_ident,
            Cdr.moderator_name,
            Cdr.service_type,
            func.count(func.distinct(Cdr.service_id)),
            func.count(Cdr.id),
            func.coalesce(func.sum(seconds), 0),
            func.coalesce(func.sum(_minutes(seconds)), 0),
        )
        .where(*_scope(start, end, company_id, subscriber_id))
        .group_by(Cdr.company_name, Cdr.subscriber_id, Cdr.moderator_ident, Cdr.moderator_name, Cdr.service_type)
        .order_by(
            Cdr.company_name, Cdr.moderator_name, Cdr.subscriber_id.is_(None), Cdr.subscriber_id, Cdr.service_type
        )
    )
    return [
        ModeratorUsage(
            company=company or "",
            subscriber_id=sub,
            moderator_ident=ident or "",
            moderator_name=name or "",
            service_type=stype or "",
            events=int(events),
            legs=int(legs),
            seconds=int(secs),
            minutes=int(mins),
        )
        for company, sub, ident, name, stype, events, legs, secs, mins in session.execute(stmt)
    ]


def conference_report(
    session: Session,
    *,
    start: dt.datetime,
    end: dt.datetime,
    company_id: int | None = None,
    subscriber_id: int | None = None,
    service_id: int | None = None,
    limit: int | None = 10_000,
) -> list[ConferenceLegUsage]:
    """Every leg of the conferences in the period (or of one ``service_id``), ordered by run then call time."""
    seconds = _seconds(session)
    party = case((Cdr.direction == "in", Cdr.cli), else_=Cdr.destination)
    contact_name = func.trim(
        func.coalesce(Contact.first_name, literal_column("''")) + " " + func.coalesce(Contact.last_name, "")
    )
    conditions = _scope(start, end, company_id, subscriber_id)
    if service_id is not None:
        conditions.append(Cdr.service_id == service_id)
    stmt = (
        select(
            Cdr.service_id,
            Cdr.service_type,
            Cdr.service_subject,
            party,
            Cdr.role,
            Cdr.moderator_name,
            contact_name,
            Contact.nickname,
            Cdr.direction,
            Cdr.called_at,
            Cdr.joined_at,
            Cdr.disconnected_at,
            seconds,
            Company.timezone,
        )
        .outerjoin(Company, Company.id == Cdr.company_id)
        .outerjoin(Contact, and_(Contact.subscriber_id == Cdr.subscriber_id, Contact.phone == party))
        .where(*conditions)
        # NULLs sort differently on SQLite and PostgreSQL: put them last explicitly
        .order_by(Cdr.service_id.is_(None), Cdr.service_id, Cdr.called_at.is_(None), Cdr.called_at, Cdr.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    report = []
    seen: set[tuple[Any, ...]] = set()
    for row in session.execute(stmt):
        sid, stype, subject, number, role, moderator, full, nick, direction, called, joined, gone, secs, tz = row
        key = (sid, number, called, joined, gone, direction)
        if key in seen:  # the same number saved twice in one moderator's contacts
            continue
        seen.add(key)
        name = moderator if role == "subscriber" else (full or nick or "")
        report.append(
            ConferenceLegUsage(
                service_id=sid,
                service_type=stype or "",
                subject=subject or "",
                caller=number or "",
                name=name or "",
                direction=direction or "",
                role=role or "",
                called_at=called,
                joined_at=joined,
                disconnected_at=gone,
                seconds=int(secs or 0),
                minutes=-(-int(secs or 0) // 60),
                timezone=tz or "UTC",
            )
        )
    return report


def minutes_per_day(
    session: Session,
    *,
    start: dt.datetime,
    end: dt.datetime,
    by: Literal["company", "moderator"] = "company",
    company_id: int | None = None,
    subscriber_id: int | None = None,
    tz_name: str | None = None,
) -> list[DailyMinutes]:
    """Minutes per local day (in ``tz_name``, default UTC) per company name or moderator ident, for charts.

    Aggregated in SQL per UTC hour, then folded into local days here (exact for whole-hour offsets; in
    half-hour zones a leg ending in the half hour around midnight may land on the neighbouring day).
    Days without usage are absent; ordered by day then key.
    """
    seconds = _seconds(session)
    key = Cdr.company_name if by == "company" else Cdr.moderator_ident
    if session.get_bind().dialect.name == "sqlite":
        hour: ColumnElement[Any] = func.strftime("%Y-%m-%d %H:00:00", Cdr.disconnected_at)
    else:
        hour = func.date_trunc("hour", Cdr.disconnected_at)
    stmt = (
        select(
            hour.label("hour"),
            key,
            func.count(func.distinct(Cdr.service_id)),
            func.coalesce(func.sum(seconds), 0),
            func.coalesce(func.sum(_minutes(seconds)), 0),
        )
        .where(*_scope(start, end, company_id, subscriber_id))
        .group_by(literal_column("hour"), key)
    )
    tz = zone(tz_name)
    totals: dict[tuple[dt.date, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for hour_value, name, events, secs, mins in session.execute(stmt):
        when = dt.datetime.fromisoformat(hour_value) if isinstance(hour_value, str) else hour_value
        day = when.replace(tzinfo=dt.UTC).astimezone(tz).date()
        total = totals[(day, name or "")]
        # events are distinct per hour; a run spanning hours counts in each (a chart of activity)
        total[0] += int(events)
        total[1] += int(secs)
        total[2] += int(mins)
    return [
        DailyMinutes(day=day, key=name, events=e, seconds=s, minutes=m)
        for (day, name), (e, s, m) in sorted(totals.items())
    ]
