"""The CDR file format: columns, header and row formatting. Pure: no clock, no I/O.

One row per leg. Times are stored as naive UTC and rendered here in the company's time zone as
ISO 8601 with the offset (``2026-11-22T07:15:00+01:00``), so a file is unambiguous across DST changes.
Booleans are ``1``/``0``; an unknown time is an empty field; ``duration_s`` is the connected time
(joined -> disconnected, whole seconds, 0 when the leg never joined); ``minutes`` is that duration
rounded up to whole minutes, the usual telephony billing unit.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Cdr attributes read from the database, in this order, by the export and the spool writer.
SOURCE_COLUMNS: tuple[str, ...] = (
    "id",
    "created_at",
    "company_id",
    "company_name",
    "moderator_ident",
    "moderator_name",
    "moderator_phone",
    "subscriber_id",
    "ic_id",
    "service_id",
    "service_result",
    "service_type",
    "service_subject",
    "service_started_at",
    "service_completed_at",
    "scheduled",
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
    "call_id",
    "cause",
    "codec",
    "packet_loss",
    "leg_id",
)

#: The header row of every CDR file: the source columns plus the two derived ones.
HEADER: tuple[str, ...] = (*SOURCE_COLUMNS, "duration_s", "minutes")

TIME_COLUMNS = frozenset(
    {"created_at", "service_started_at", "service_completed_at", "called_at", "joined_at", "disconnected_at"}
)
BOOL_COLUMNS = frozenset({"scheduled", "activation_pin_used", "recording"})
_JOINED = SOURCE_COLUMNS.index("joined_at")
_DISCONNECTED = SOURCE_COLUMNS.index("disconnected_at")


@lru_cache(maxsize=256)
def zone(name: str | None) -> dt.tzinfo:
    """The tzinfo for an IANA name; unknown or empty names fall back to UTC (never raises)."""
    if not name:
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


#: What parsing or converting a damaged stored time raises (bad text, a naive/aware mix, year 9999 + offset).
#: Such a time is written as stored and gives no duration: one damaged row must not fail a whole file.
UNRENDERABLE = (ValueError, TypeError, OverflowError)


def render_time(value: dt.datetime | str | None, tz: dt.tzinfo) -> str:
    """Naive-UTC ``value`` (datetime, or its ``str()``/SQLite text form) as ISO 8601 in ``tz``; ``None`` -> ``""``."""
    if value is None or value == "":
        return ""
    try:
        when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        return when.replace(tzinfo=dt.UTC).astimezone(tz).isoformat(timespec="seconds")
    except UNRENDERABLE:
        return str(value)


def duration_s(joined_at: dt.datetime | str | None, disconnected_at: dt.datetime | str | None) -> int:
    """Connected seconds of a leg (rounded half-up to whole seconds; 0 if it never joined)."""
    if not joined_at or not disconnected_at:
        return 0
    try:
        joined = dt.datetime.fromisoformat(joined_at) if isinstance(joined_at, str) else joined_at
        gone = dt.datetime.fromisoformat(disconnected_at) if isinstance(disconnected_at, str) else disconnected_at
        if gone <= joined:
            return 0
        return int((gone - joined).total_seconds() + 0.5)  # half-up, as the SQL reports round
    except UNRENDERABLE:
        return 0


def billed_minutes(seconds: float) -> int:
    """Seconds rounded up to whole minutes."""
    return math.ceil(seconds / 60) if seconds > 0 else 0


class TimeRenderer:
    """:func:`render_time` for one zone, fast: the zone conversion is cached per UTC hour (or minute).

    Within a UTC hour with no offset change and a whole-hour offset, local time is the UTC text with
    only the date and hour replaced, so one conversion per hour serves every value in it. Other hours
    (a DST change inside the hour, half-hour zones such as India) use a per-minute cache: offsets change
    only on whole minutes (every tz database transition since 1970 does), so the seconds are copied from
    the text. Values are the database's naive UTC text (``2026-11-22 06:15:00.000000``, SQLite) or
    datetimes (other databases), whose ``str()`` has the same layout.
    """

    MAX_CACHE = 20_000
    _PER_MINUTE = ("", "")

    def __init__(self, tz: dt.tzinfo) -> None:
        self.tz = tz
        self.hours: dict[str, tuple[str, str]] = {}
        self.cache: dict[str, tuple[str, str]] = {}

    def miss_hour(self, key: str) -> tuple[str, str]:
        """(local ``YYYY-MM-DDTHH``, offset) for UTC hour ``YYYY-MM-DD HH``, or ``("", "")``: use minutes."""
        if len(self.hours) >= self.MAX_CACHE:
            self.hours.clear()
        start = dt.datetime.fromisoformat(key + ":00").replace(tzinfo=dt.UTC)
        first = start.astimezone(self.tz)
        last = (start + dt.timedelta(minutes=59, seconds=59)).astimezone(self.tz)
        offset = first.utcoffset()
        hit = self._PER_MINUTE
        if offset is not None and offset == last.utcoffset() and offset.total_seconds() % 3600 == 0:
            iso = first.isoformat(timespec="minutes")  # 2026-11-22T07:00+01:00
            hit = (iso[:13], iso[16:])
        self.hours[key] = hit
        return hit

    def miss(self, key: str) -> tuple[str, str]:
        """Convert one UTC minute (``YYYY-MM-DD HH:MM``) and cache (local prefix, offset)."""
        if len(self.cache) >= self.MAX_CACHE:
            self.cache.clear()  # bounded memory
        local = dt.datetime.fromisoformat(key).replace(tzinfo=dt.UTC).astimezone(self.tz)
        iso = local.isoformat(timespec="minutes")  # 2026-11-22T07:15+01:00
        hit = self.cache[key] = (iso[:16], iso[16:])
        return hit

    def __call__(self, value: object) -> str:
        if value is None or value == "":
            return ""
        text = value if value.__class__ is str else str(value)
        assert isinstance(text, str)
        tail = text[13:19] if len(text) >= 19 else text[13:16] + ":00"  # ":MM:SS"
        try:
            local, offset = self.hours.get(text[:13]) or self.miss_hour(text[:13])
            if local:
                return local + tail + offset
            local, offset = self.cache.get(text[:16]) or self.miss(text[:16])
        except UNRENDERABLE:
            return text  # not a time (a damaged row): written as stored rather than failing the file
        return local + tail[3:] + offset


_TIME_INDEXES = tuple(i for i, c in enumerate(SOURCE_COLUMNS) if c in TIME_COLUMNS)
_BOOL_INDEXES = tuple(i for i, c in enumerate(SOURCE_COLUMNS) if c in BOOL_COLUMNS)
_WIDTH = len(SOURCE_COLUMNS)


class RowFormatter:
    """Formats source rows (values in :data:`SOURCE_COLUMNS` order) into CSV fields for one time zone.

    Built once per time zone and reused for every row. Only the time and flag columns are rewritten;
    other values go to ``csv.writer`` as they are (``None`` becomes an empty field). This is the inner
    loop of a million-row export, hence the locals and the inlined cache lookup.
    """

    def __init__(self, tz: dt.tzinfo) -> None:
        self.tz = tz
        self.render = TimeRenderer(tz)

    def __call__(self, values: Sequence[object]) -> list[object]:
        fields = list(values)
        if len(fields) < _WIDTH:
            raise ValueError(f"CDR row has {len(fields)} values, expected {_WIDTH}")
        del fields[_WIDTH:]
        joined, gone = fields[_JOINED], fields[_DISCONNECTED]
        seconds = 0
        if joined and gone:
            try:
                if joined.__class__ is str:
                    joined = dt.datetime.fromisoformat(joined)
                if gone.__class__ is str:
                    gone = dt.datetime.fromisoformat(gone)
                if isinstance(joined, dt.datetime) and isinstance(gone, dt.datetime) and gone > joined:
                    seconds = int((gone - joined).total_seconds() + 0.5)
            except UNRENDERABLE:
                seconds = 0  # a damaged time: no duration rather than a failed file
        render = self.render
        hour_get, hour_miss = render.hours.get, render.miss_hour
        for i in _TIME_INDEXES:  # TimeRenderer.__call__, inlined
            value = fields[i]
            if value is None or value == "":
                fields[i] = ""
                continue
            text = value if value.__class__ is str else str(value)
            tail = text[13:19] if len(text) >= 19 else text[13:16] + ":00"
            try:
                local, offset = hour_get(text[:13]) or hour_miss(text[:13])
                if not local:
                    local, offset = render.cache.get(text[:16]) or render.miss(text[:16])
                    tail = tail[3:]
            except UNRENDERABLE:
                fields[i] = text  # as TimeRenderer: a damaged time is written as stored
                continue
            fields[i] = local + tail + offset
        for i in _BOOL_INDEXES:
            fields[i] = 1 if fields[i] else 0
        fields.append(seconds)
        fields.append(-(-seconds // 60))
        return fields


class Formatters:
    """One :class:`RowFormatter` per time-zone name, created on first use."""

    def __init__(self) -> None:
        self._by_zone: dict[str | None, RowFormatter] = {}

    def __call__(self, tz_name: str | None) -> RowFormatter:
        formatter = self._by_zone.get(tz_name)
        if formatter is None:
            formatter = self._by_zone[tz_name] = RowFormatter(zone(tz_name))
        return formatter


def format_row(values: Sequence[object], tz_name: str | None = "UTC") -> list[str]:
    """One source row as the CSV fields (strings) for a company in ``tz_name``.

    Convenience for tests and small callers; bulk code uses :class:`Formatters` and ``csv.writer``.
    """
    return ["" if v is None else str(v) for v in RowFormatter(zone(tz_name))(values)]
