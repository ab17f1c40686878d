"""The SQLite fast path of a large CDR export: the bytes of the generic path, at a fraction of its cost.

The generic path (:func:`bridge.cdr.export.write_csv`) fetches 33 values per CDR as Python objects and
hands 34 fields to ``csv.writer``; for a million CDRs that is most of the time. Here:

- SQLite renders each CDR as ONE string with a single ``format()``: the runs of plain columns between the
  time columns are already CSV (``a,b,c``: NULL -> empty, integers in decimal, flags as ``1``/``0``), the
  13 pieces Python still needs are separated by :data:`SEP`, and ``packet_loss`` is written with 21
  significant digits (``%!.20e``), which reads back as exactly the stored double (SQLite's own 15-digit
  text does not: ``0.6782850768370841`` would come out as ``0.678285076837084``);
- a whole chunk of rows comes back as one value (``group_concat`` over an ordered, keyset-paginated
  subquery), so SQLite works through the chunk in one call, without the GIL: the export overlaps the next
  chunk's query with the Python formatting of this one (see :func:`bridge.cdr.export.write_fast`);
- each time is rendered from a per-zone cache of UTC hour -> (local ``YYYY-MM-DDTHH``, offset), the hour
  path of :class:`~bridge.cdr.csvformat.TimeRenderer`: one dict hit and two slices per value, in one
  f-string per line; ``duration_s`` / ``minutes`` are computed as :class:`~bridge.cdr.csvformat.RowFormatter`
  computes them and ``packet_loss`` is ``repr(float)`` (what ``csv.writer`` writes).

Whatever the fast line cannot render is done by the reference code, so the output never differs: a row
with an empty time, a time shorter than ``YYYY-MM-DD HH:MM:SS`` or not in the stored form, or in an hour
whose offset is not whole hours or changes inside it (DST edges, half-hour zones), has its times rendered
by ``TimeRenderer``; a chunk in which a text holds :data:`SEP` is re-read by the generic path; a line
holding a character ``csv.writer`` would quote (checked on the whole chunk with C-level counts, then per
line) is re-read and written by the generic path. One limit: ``format()`` stops a text at a NUL character,
which :func:`bridge.cdr.writer.write_cdr` never stores. Pure: the caller runs the statements.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, bindparam, func, literal, literal_column, select, tuple_
from sqlalchemy import type_coerce as coerce

from bridge.cdr.csvformat import BOOL_COLUMNS, HEADER, SOURCE_COLUMNS, TIME_COLUMNS, UNRENDERABLE, TimeRenderer, zone
from bridge.db.models import Cdr

#: Separates the pieces of a fast row, and the rows of a chunk (a control character no CDR text holds).
SEP = "\x1f"
#: Pieces per fast row: id, created_at, segment, started, completed, segment, called, joined,
#: disconnected, segment, packet_loss, leg_id, company_id.
PIECES = 13
_DISCONNECTED, _ID = 8, 0
#: Commas in one CSV line (fields - 1).
COMMAS = len(HEADER) - 1


def _flag(column: str) -> str:
    return f"CASE WHEN cdr.{column} THEN 1 ELSE 0 END"


def _pieces() -> list[tuple[str, list[str]]]:
    """The ``format()`` spec and columns of each piece, in :data:`SOURCE_COLUMNS` order: the id and each time
    alone (Python renders them), each run of plain columns between them as one comma-joined piece (flags as
    ``1``/``0``), ``packet_loss`` exact, ``leg_id``; then ``company_id`` again, for the time zone."""
    pieces: list[tuple[str, list[str]]] = []
    run: list[str] = []

    def end_run() -> None:
        if run:
            pieces.append((",".join(["%s"] * len(run)), run.copy()))
            run.clear()

    for name in SOURCE_COLUMNS:
        if name == "id" or name in TIME_COLUMNS:
            end_run()
            pieces.append(("%s", [f"cdr.{name}"]))
        elif name == "packet_loss":
            end_run()
            pieces.append(("%!.20e", ["cdr.packet_loss"]))
        else:
            run.append(_flag(name) if name in BOOL_COLUMNS else f"cdr.{name}")
    end_run()
    pieces.append(("%s", ["cdr.company_id"]))
    return pieces


_PIECES = _pieces()
assert len(_PIECES) == PIECES

#: The SQL expression of one fast row.
LINE_SQL = (
    "format('"
    + SEP.join(spec for spec, _ in _PIECES)
    + "', "
    + ", ".join(column for _, columns in _PIECES for column in columns)
    + ")"
)


def keyset() -> list[ColumnElement[bool]]:
    """Conditions for "after the row (``:k_at``, ``:k_id``)" in (disconnected_at, id) order.

    Times are compared as the stored text (what a fast row carries). The plain ``>=`` lets SQLite start
    the index scan at the key; it must be the only lower bound on ``disconnected_at`` (SQLite starts the
    scan at the first one it finds), so the first chunk starts "after" (period start, -1).
    """
    at = coerce(Cdr.disconnected_at, String)
    key_at = bindparam("k_at", type_=String)
    return [at >= key_at, tuple_(at, Cdr.id) > tuple_(key_at, bindparam("k_id"))]


def chunk_select(conditions: Sequence[ColumnElement[bool]], *, limit: int) -> Select[Any]:
    """``SELECT count(*), group_concat(<fast row>, SEP)`` over the next ``limit`` CDRs in export order.

    The chunk starts after the key bound as ``k_at`` / ``k_id`` (see :func:`keyset`); ``conditions``
    must not bound ``disconnected_at`` from below.
    """
    inner = (
        select(literal_column(LINE_SQL).label("line"))
        .select_from(Cdr)
        .where(and_(*conditions, *keyset()))
        .order_by(Cdr.disconnected_at, Cdr.id)
        .limit(limit)
        .subquery()
    )
    return select(func.count(), func.group_concat(inner.c.line, literal(SEP)))


def whole_rows(text: str, rows: int) -> bool:
    """Whether a chunk splits into ``rows`` fast rows (False when a text field holds :data:`SEP`)."""
    return text.count(SEP) == PIECES * rows - 1


def last_key(text: str) -> tuple[str, int]:
    """(disconnected_at as stored, id) of the last row of a whole chunk: where the next chunk starts."""
    last = text.rsplit(SEP, PIECES)[-PIECES:]
    return last[_DISCONNECTED], int(last[_ID])


@dataclass(frozen=True)
class Rendered:
    """A chunk turned into CSV: ``text``, its ``lines``, and whether no line may need quoting (``clean``)."""

    text: str
    lines: list[str]
    clean: bool


class ZoneHours(dict[str, tuple[str, str]]):
    """UTC hour ``YYYY-MM-DD HH`` -> (local ``YYYY-MM-DDTHH``, offset) for one zone, filled on demand.

    A missing hour that the hour path cannot serve (offset not whole hours, or changing inside the hour),
    or a key that is not an hour in the stored form, raises ``KeyError``: that row's times go the slow way.
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
        except UNRENDERABLE:
            raise KeyError(key) from None
        if not local:
            raise KeyError(key)
        if len(self) >= self.MAX:
            self.clear()
        self[key] = hit = (local, offset)
        return hit


class FloatText(dict[str, str]):
    """``%!.20e`` text of a double -> ``repr`` of that double (what ``csv.writer`` writes), cached."""

    MAX = 50_000

    def __missing__(self, key: str) -> str:
        if len(self) >= self.MAX:
            self.clear()
        text = self[key] = repr(float(key))
        return text


class FastLines:
    """Turns the pieces of fast rows into CSV lines; one instance per export. Pure.

    ``zones``: company id (decimal text) -> its time-zone name. A CDR without company (empty id) or whose
    company is not in it (deleted) renders in UTC, as the generic path's outer join does.
    """

    def __init__(self, zones: Mapping[str, str | None]) -> None:
        self.zones = dict(zones)
        self.floats = FloatText()
        self._by_name: dict[str | None, ZoneHours] = {}
        self._by_company: dict[str, ZoneHours] = {}

    def hours(self, company_id: str) -> ZoneHours:
        name = self.zones.get(company_id)
        hours = self._by_name.get(name)
        if hours is None:
            hours = self._by_name[name] = ZoneHours(TimeRenderer(zone(name)))
        self._by_company[company_id] = hours
        return hours

    def render(self, text: str) -> Rendered:
        """A whole chunk (see :func:`whole_rows`) as CSV text: split, format, join, check. Pure."""
        lines = self.lines(text.split(SEP))
        out = "".join(lines)
        return Rendered(out, lines, clean_lines(out, len(lines)))

    def lines(self, pieces: list[str]) -> list[str]:
        """One ``\\n``-terminated line per fast row (:data:`PIECES` pieces each), in order: the inner loop."""
        out: list[str] = []
        add = out.append
        by_company = self._by_company
        floats = self.floats
        fromiso = dt.datetime.fromisoformat
        for i, c0, s1, t1, t2, s2, t3, t4, t5, s3, pl, leg, cid in zip(*[iter(pieces)] * PIECES, strict=True):
            hours = by_company.get(cid)
            if hours is None:
                hours = self.hours(cid)
            sec = 0
            if t4 and t5:
                try:
                    seconds = (fromiso(t5) - fromiso(t4)).total_seconds()
                except UNRENDERABLE:
                    seconds = 0  # a damaged time: as RowFormatter
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
            except KeyError:
                r = hours.render
                add(
                    f"{i},{r(c0)},{s1},{r(t1)},{r(t2)},{s2},{r(t3)},{r(t4)},{r(t5)},{s3},"
                    f"{floats[pl]},{leg},{sec},{-(-sec // 60)}\n"
                )
                continue
            add(
                f"{i},{a[0]}{c0[13:19]}{a[1]},{s1},{b[0]}{t1[13:19]}{b[1]},{c[0]}{t2[13:19]}{c[1]},{s2},"
                f"{d[0]}{t3[13:19]}{d[1]},{e[0]}{t4[13:19]}{e[1]},{g[0]}{t5[13:19]}{g[1]},{s3},"
                f"{floats[pl]},{leg},{sec},{-(-sec // 60)}\n"
            )
        return out


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


def suspect_ids(lines: list[str]) -> dict[int, int]:
    """Line index by CDR id for the lines :func:`clean_line` rejects (their text may need quoting)."""
    return {int(line.partition(",")[0]): n for n, line in enumerate(lines) if not clean_line(line)}
