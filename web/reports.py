"""Usage aggregates, service reports and CSV for the portal. Pure: rows in, rows/text out.

The CDR helper's ``bridge.cdr.reports`` is the appliance-wide source of these aggregates; until it is
in the tree the portal computes them here from the (already tenant-filtered) CDR rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bridge.db.models import Cdr, Leg


def seconds(joined_at: dt.datetime | None, disconnected_at: dt.datetime | None) -> float:
    if joined_at is None or disconnected_at is None or disconnected_at <= joined_at:
        return 0.0
    return (disconnected_at - joined_at).total_seconds()


@dataclass(frozen=True)
class UsageRow:
    company: str
    moderator: str
    subscriber_id: int | None
    service_type: str
    events: int
    legs: int
    minutes: float


def usage(cdrs: Iterable[Cdr]) -> list[UsageRow]:
    """Moderator usage: per (company, moderator, service type) the number of conferences and minutes."""
    services: dict[tuple[str, str, int | None, str], set[int | None]] = defaultdict(set)
    legs: dict[tuple[str, str, int | None, str], int] = defaultdict(int)
    total: dict[tuple[str, str, int | None, str], float] = defaultdict(float)
    for cdr in cdrs:
        key = (cdr.company_name, cdr.moderator_name or cdr.moderator_ident, cdr.subscriber_id, cdr.service_type)
        services[key].add(cdr.service_id)
        legs[key] += 1
        total[key] += seconds(cdr.joined_at, cdr.disconnected_at)
    return [
        UsageRow(company, moderator, sid, stype, len(services[key]), legs[key], round(total[key] / 60, 1))
        for key in sorted(services, key=lambda k: (k[0], k[1], k[3]))
        for company, moderator, sid, stype in [key]
    ]


def minutes_by(cdrs: Iterable[Cdr], label: str) -> list[tuple[str, float]]:
    """Minutes grouped by ``day`` (service start date), ``company`` or ``moderator``, sorted by label."""
    sums: dict[str, float] = defaultdict(float)
    for cdr in cdrs:
        if label == "day":
            when = cdr.joined_at or cdr.called_at or cdr.created_at
            key = when.date().isoformat() if when else "?"
        elif label == "company":
            key = cdr.company_name or "?"
        else:
            key = cdr.moderator_name or cdr.moderator_ident or "?"
        sums[key] += seconds(cdr.joined_at, cdr.disconnected_at) / 60
    return [(key, round(sums[key], 1)) for key in sorted(sums)]


def days(start: dt.date, end: dt.date, points: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Fill missing days with 0 so a chart shows gaps (at most 366 days)."""
    have = dict(points)
    out: list[tuple[str, float]] = []
    day = start
    while day <= end and len(out) < 366:
        out.append((day.isoformat(), have.get(day.isoformat(), 0.0)))
        day += dt.timedelta(days=1)
    return out


USAGE_HEADER = ("company", "moderator", "service_type", "events", "legs", "minutes")


def usage_csv(rows: Iterable[UsageRow]) -> str:
    return _csv(USAGE_HEADER, ([r.company, r.moderator, r.service_type, r.events, r.legs, r.minutes] for r in rows))


CDR_COLUMNS = (
    "id",
    "company_name",
    "moderator_ident",
    "moderator_name",
    "moderator_phone",
    "subscriber_id",
    "ic_id",
    "service_id",
    "service_type",
    "service_subject",
    "service_result",
    "service_started_at",
    "service_completed_at",
    "destination",
    "direction",
    "role",
    "cli",
    "dnis",
    "called_at",
    "joined_at",
    "disconnected_at",
    "port_id",
    "activation_pin_used",
    "recording",
    "cause",
    "codec",
    "packet_loss",
)


def _cell(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return int(value)
    return "" if value is None else value


def cdr_csv(cdrs: Iterable[Cdr]) -> str:
    """CDRs (billing records) as CSV, times in UTC, plus the connected seconds."""
    return _csv(
        (*CDR_COLUMNS, "duration_s"),
        (
            [_cell(getattr(c, col)) for col in CDR_COLUMNS] + [round(seconds(c.joined_at, c.disconnected_at))]
            for c in cdrs
        ),
    )


@dataclass(frozen=True)
class ReportLine:
    """One line of a per-conference service report."""

    leg_id: int
    caller: str
    name: str
    direction: str
    role: str
    status: str
    called_at: dt.datetime | None
    disconnected_at: dt.datetime | None
    minutes: float


def service_report(legs: Iterable[Leg], names: dict[str, str]) -> list[ReportLine]:
    """The per-conference report: who (number, name from the subscriber's users), when, how long."""
    lines = []
    for leg in legs:
        number = leg.called if leg.direction == "out" else leg.calling
        lines.append(
            ReportLine(
                leg.id,
                number,
                names.get(number, ""),
                leg.direction,
                leg.role,
                leg.status,
                leg.called_at,
                leg.disconnected_at,
                round(seconds(leg.joined_at, leg.disconnected_at) / 60, 1),
            )
        )
    return lines


REPORT_HEADER = ("caller", "name", "direction", "role", "status", "called_at", "disconnected_at", "minutes")


def service_report_csv(lines: Iterable[ReportLine]) -> str:
    return _csv(
        REPORT_HEADER,
        (
            [
                ln.caller,
                ln.name,
                ln.direction,
                ln.role,
                ln.status,
                _cell(ln.called_at),
                _cell(ln.disconnected_at),
                ln.minutes,
            ]
            for ln in lines
        ),
    )


def _safe(value: object) -> object:
    """Defuse spreadsheet formulas in text cells (CSV injection); phone numbers like +1555... stay."""
    if not isinstance(value, str) or not value:
        return value
    if value[0] in "=@\t\r" or (value[0] in "+-" and not value[1:].replace(".", "").isdigit()):
        return "'" + value
    return value


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_safe(v) for v in row])
    return out.getvalue()
