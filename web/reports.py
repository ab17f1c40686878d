"""Chart series, the per-conference service report and CSV text for the portal. Pure: rows in, rows/text out.

The moderator usage aggregates come from ``bridge.cdr.reports`` and CDR exports from ``bridge.cdr.export``;
what stays here is what those do not cover: folding the daily aggregates into chart series, and the
service report built from ``Leg`` rows (so it also covers a conference still running, before its CDRs).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bridge.cdr.reports import DailyMinutes, ModeratorUsage
from bridge.db.models import Leg


def seconds(joined_at: dt.datetime | None, disconnected_at: dt.datetime | None) -> float:
    if joined_at is None or disconnected_at is None or disconnected_at <= joined_at:
        return 0.0
    return (disconnected_at - joined_at).total_seconds()


def per_day(rows: Iterable[DailyMinutes]) -> list[tuple[str, float]]:
    """Billed minutes per day (all keys summed), sorted by day."""
    sums: dict[str, float] = defaultdict(float)
    for row in rows:
        sums[row.day.isoformat()] += row.minutes
    return sorted(sums.items())


def per_key(rows: Iterable[DailyMinutes]) -> list[tuple[str, float]]:
    """Billed minutes per company or moderator (all days summed), sorted by key."""
    sums: dict[str, float] = defaultdict(float)
    for row in rows:
        sums[row.key or "(none)"] += row.minutes
    return sorted(sums.items())


def days(start: dt.date, end: dt.date, points: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Fill missing days with 0 so a chart shows gaps (at most 366 days)."""
    have = dict(points)
    out: list[tuple[str, float]] = []
    day = start
    while day <= end and len(out) < 366:
        out.append((day.isoformat(), have.get(day.isoformat(), 0.0)))
        day += dt.timedelta(days=1)
    return out


USAGE_HEADER = ("company", "moderator", "moderator_ident", "service_type", "events", "legs", "seconds", "minutes")


def usage_csv(rows: Iterable[ModeratorUsage]) -> str:
    """The moderator usage report (``bridge.cdr.reports.usage_by_moderator`` rows) as CSV."""
    return _csv(
        USAGE_HEADER,
        (
            [r.company, r.moderator_name, r.moderator_ident, r.service_type, r.events, r.legs, r.seconds, r.minutes]
            for r in rows
        ),
    )


def _cell(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    return "" if value is None else value


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
