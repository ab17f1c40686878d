"""The SQLite fast path of a large CDR export: the same bytes as the generic path, at a third of the cost.

The generic path (:func:`bridge.cdr.export.write_csv`) fetches 33 values per CDR as Python objects and
hands 34 fields to ``csv.writer``; for a million CDRs that is most of the time. Here:

- SQLite joins the runs of plain columns between the time columns into three ready CSV segments with
  ``format('%s,%s,...')`` (NULL -> empty, integers in decimal, flags as ``1``/``0``), so a row is 13
  values instead of 33;
- each time is rendered from a per-zone cache of UTC hour -> (local ``YYYY-MM-DDTHH``, offset), i.e. the
  hour path of :class:`~bridge.cdr.csvformat.TimeRenderer`: one dict hit and two slices per value, inside
  one f-string per line; the company's zone comes from a dict by ``company_id`` (no join per row);
- ``duration_s`` / ``minutes`` and ``packet_loss`` (``str(float)`` is ``repr``) are computed exactly as
  :class:`~bridge.cdr.csvformat.RowFormatter` does.

What the fast line cannot render is done by the reference code, so output never differs: a row with a time
that is empty or shorter than ``YYYY-MM-DD HH:MM:SS``, or in an hour whose offset is not whole
hours or changes inside it (DST edges, half-hour zones), has its times rendered by ``TimeRenderer``; and a
chunk whose text holds a character ``csv.writer`` would quote (checked on the whole chunk with C-level
counts, then per line) has those rows re-read and written by the generic path. Pure: the caller runs the
statement and writes the text.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, literal_column, select

from bridge.cdr.csvformat import HEADER, TimeRenderer, zone
from bridge.db.models import Cdr

#: Commas in one CSV line (fields - 1).
COMMAS = len(HEADER) - 1


def _flag(column: str) -> str:
    return f"CASE WHEN {column} THEN 1 ELSE 0 END"


def _segment(*columns: str) -> ColumnElement[Any]:
    """``format('%s,%s,...', <columns>)``: one CSV segment, rendered by SQLite."""
    return literal_column("format('" + ",".join(["%s"] * len(columns)) + "', " + ", ".join(columns) + ")")


def fast_select(*conditions: ColumnElement[bool]) -> Select[Any]:
    """The fast path's statement: 13 values per CDR, ordered as :func:`bridge.cdr.export.cdr_select`.

    ``id, created_at, <segment 1>, service_started_at, service_completed_at, <segment 2>, called_at,
    joined_at, disconnected_at, <segment 3>, packet_loss, leg_id or '', company_id``.
    """
    c = "cdr."
    seg1 = _segment(
        *(
            c + name
            for name in (
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
            )
        )
    )
    seg2 = _segment(_flag(c + "scheduled"), *(c + n for n in ("destination", "direction", "role", "cli", "dnis")))
    seg3 = _segment(
        c + "port_id",
        _flag(c + "activation_pin_used"),
        _flag(c + "recording"),
        *(c + n for n in ("call_id", "cause", "codec")),
    )
    stmt = select(
        Cdr.id,
        literal_column(c + "created_at"),
        seg1,
        literal_column(c + "service_started_at"),
        literal_column(c + "service_completed_at"),
        seg2,
        literal_column(c + "called_at"),
        literal_column(c + "joined_at"),
        literal_column(c + "disconnected_at"),
        seg3,
        literal_column(c + "packet_loss"),
        literal_column(f"ifnull({c}leg_id, '')"),
        literal_column(c + "company_id"),
    ).select_from(Cdr)
    if conditions:
        stmt = stmt.where(and_(*conditions))
    return stmt.order_by(Cdr.disconnected_at, Cdr.id)


class ZoneHours(dict[str, tuple[str, str]]):
    """UTC hour ``YYYY-MM-DD HH`` -> (local ``YYYY-MM-DDTHH``, offset) for one zone, filled on demand.

    A missing hour that the hour path cannot serve (offset not whole hours, or changing inside the hour),
    or a key that is not an hour, raises ``KeyError``: the caller renders that row's times the slow way.
    """

    MAX = TimeRenderer.MAX_CACHE

    def __init__(self, render: TimeRenderer) -> None:
        super().__init__()
        self.render = render

    def __missing__(self, key: str) -> tuple[str, str]:
        if len(key) != 13 or key[10] != " ":
            raise KeyError(key)
        try:
            local, offset = self.render.miss_hour(key)
        except ValueError:
            raise KeyError(key) from None
        if not local:
            raise KeyError(key)
        if len(self) >= self.MAX:
            self.clear()
        self[key] = hit = (local, offset)
        return hit


@lru_cache(maxsize=1)
def csv_special_chars() -> str:
    """The characters (among the plausible ones) that make this Python's ``csv.writer`` quote a field."""
    special = ""
    for char in ',"\n\r\t;\x00':
        buffer = io.StringIO()
        try:
            csv.writer(buffer, lineterminator="\n").writerow(["a" + char + "b", "x"])
        except csv.Error:
            special += char
            continue
        if buffer.getvalue().startswith('"'):
            special += char
    return special


def clean_lines(text: str, count: int) -> bool:
    """Whether ``count`` lines of fast text (each ending in ``\\n``) hold nothing ``csv.writer`` would quote."""
    if text.count(",") != COMMAS * count or text.count("\n") != count:
        return False
    return not any(char in text for char in csv_special_chars() if char not in ",\n")


def clean_line(line: str) -> bool:
    """:func:`clean_lines` for one line."""
    return clean_lines(line, 1) and line.endswith("\n")


class FastLines:
    """Turns fast rows (see :func:`fast_select`) into CSV lines; one instance per export.

    ``zone_of``: company id -> its time-zone name (``None``: no company / deleted -> UTC), called once per
    company id met.
    """

    def __init__(self, zone_of: Callable[[int | None], str | None]) -> None:
        self.zone_of = zone_of
        self._by_name: dict[str | None, ZoneHours] = {}
        self._by_company: dict[int | None, ZoneHours] = {}

    def hours(self, company_id: int | None) -> ZoneHours:
        name = self.zone_of(company_id)
        hours = self._by_name.get(name)
        if hours is None:
            hours = self._by_name[name] = ZoneHours(TimeRenderer(zone(name)))
        self._by_company[company_id] = hours
        return hours

    def lines(self, rows: Iterable[Sequence[Any]]) -> list[str]:
        """One ``\\n``-terminated line per row, in order (the inner loop of the export)."""
        out: list[str] = []
        add = out.append
        by_company = self._by_company
        fromiso = dt.datetime.fromisoformat
        for row in rows:
            i, c0, s1, t1, t2, s2, t3, t4, t5, s3, pl, leg, cid = row
            hours = by_company.get(cid)
            if hours is None:
                hours = self.hours(cid)
            sec = 0
            if t4 and t5:
                seconds = (fromiso(t5) - fromiso(t4)).total_seconds()
                if seconds > 0:
                    sec = int(seconds + 0.5)
            try:
                if len(c0) < 19 or len(t1) < 19 or len(t2) < 19 or len(t3) < 19 or len(t4) < 19 or len(t5) < 19:
                    raise KeyError  # an empty or short time: TimeRenderer's other paths
                a, b, c, d, e, g = (
                    hours[c0[:13]],
                    hours[t1[:13]],
                    hours[t2[:13]],
                    hours[t3[:13]],
                    hours[t4[:13]],
                    hours[t5[:13]],
                )
            except (KeyError, TypeError):
                r = hours.render
                add(
                    f"{i},{r(c0)},{s1},{r(t1)},{r(t2)},{s2},{r(t3)},{r(t4)},{r(t5)},{s3},"
                    f"{pl},{leg},{sec},{-(-sec // 60)}\n"
                )
                continue
            add(
                f"{i},{a[0]}{c0[13:19]}{a[1]},{s1},{b[0]}{t1[13:19]}{b[1]},{c[0]}{t2[13:19]}{c[1]},{s2},"
                f"{d[0]}{t3[13:19]}{d[1]},{e[0]}{t4[13:19]}{e[1]},{g[0]}{t5[13:19]}{g[1]},{s3},"
                f"{pl},{leg},{sec},{-(-sec // 60)}\n"
            )
        return out


def suspect_ids(lines: list[str]) -> dict[int, int]:
    """Line index by CDR id for the lines :func:`clean_line` rejects (their text may need quoting)."""
    return {int(line.partition(",")[0]): n for n, line in enumerate(lines) if not clean_line(line)}


def zone_map(rows: Iterable[tuple[int, str | None]]) -> Mapping[int, str | None]:
    """Company id -> time-zone name, from ``(id, timezone)`` rows."""
    return dict(rows)
