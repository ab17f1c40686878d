"""The nightly usage summary: subscriber adds and drops, usage per subscriber and company.

One CSV per UTC day, one ``record`` type per row:

- ``subscriber_added`` / ``subscriber_dropped``: subscribers created / deleted that day;
- ``subscriber_usage``: per moderator with usage this month, the day's and the month-to-date
  (cumulative, from the 1st of the month, UTC) events, seconds and minutes;
- ``company_usage``: the same per company.

Usage comes from :func:`bridge.cdr.reports.usage_by_moderator`, so the summary, the portal and the CDR
files agree on every figure.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.cdr.reports import usage_by_moderator
from bridge.db.models import Company, Subscriber

SUMMARY_HEADER: tuple[str, ...] = (
    "record",
    "day",
    "company",
    "subscriber_id",
    "moderator",
    "mobile",
    "events",
    "seconds",
    "minutes",
    "month_events",
    "month_seconds",
    "month_minutes",
)

Row = tuple[str | int, ...]


def summary_rows(session: Session, *, day: dt.date) -> tuple[tuple[str, ...], list[Row]]:
    """Header and rows of the summary of UTC ``day``."""
    start = dt.datetime.combine(day, dt.time())
    end = start + dt.timedelta(days=1)
    month_start = start.replace(day=1)
    stamp = day.isoformat()
    rows: list[Row] = []

    for record, column in (("subscriber_added", Subscriber.created_at), ("subscriber_dropped", Subscriber.deleted_at)):
        stmt = (
            select(Company.name, Subscriber.id, Subscriber.name, Subscriber.mobile)
            .join(Company, Company.id == Subscriber.company_id)
            .where(column >= start, column < end)
            .order_by(Subscriber.id)
        )
        for company, sid, name, mobile in session.execute(stmt):
            rows.append((record, stamp, company, sid, name, mobile, "", "", "", "", "", ""))

    def fold(period_start: dt.datetime) -> tuple[dict[tuple[str, int | None, str], list[int]], dict[str, list[int]]]:
        per_subscriber: dict[tuple[str, int | None, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        per_company: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for usage in usage_by_moderator(session, start=period_start, end=end):
            for total in (per_subscriber[(usage.company, usage.subscriber_id, usage.moderator_name)],
                          per_company[usage.company]):  # fmt: skip
                total[0] += usage.events
                total[1] += usage.seconds
                total[2] += usage.minutes
        return per_subscriber, per_company

    day_sub, day_company = fold(start)
    month_sub, month_company = fold(month_start)
    mobiles: dict[int, str] = {sid: mobile for sid, mobile in session.execute(select(Subscriber.id, Subscriber.mobile))}
    for key in sorted(month_sub, key=lambda k: (k[0], k[2], k[1] or 0)):
        company, subscriber_id, name = key
        today, month = day_sub.get(key, [0, 0, 0]), month_sub[key]
        mobile = mobiles.get(subscriber_id, "") if subscriber_id is not None else ""
        ident: str | int = "" if subscriber_id is None else subscriber_id
        rows.append(("subscriber_usage", stamp, company, ident, name, mobile, *today, *month))
    for company in sorted(month_company):
        today, month = day_company.get(company, [0, 0, 0]), month_company[company]
        rows.append(("company_usage", stamp, company, "", "", "", *today, *month))
    return SUMMARY_HEADER, rows
