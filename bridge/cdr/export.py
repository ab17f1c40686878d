"""Streamed CSV export of CDRs (``bridge cdr export``) and the row source the spool files share.

Generic path (:func:`write_csv` over :func:`stream_rows`; PostgreSQL, the portal's CSV, the hourly files):
rows are read as plain tuples (no ORM objects) in chunks of :data:`CHUNK` with ``yield_per``, which uses a
server-side cursor on PostgreSQL and ``fetchmany`` on SQLite: memory stays flat whatever the period. Each
row carries the company's time zone (outer join: a deleted company renders in UTC). :func:`export_csv` on
SQLite takes the fast path instead (:func:`write_fast`, :mod:`bridge.cdr.fastcsv`), which writes the same
bytes at a third of the cost.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TextIO

from sqlalchemy import ColumnElement, DateTime, Integer, Select, String, and_, func, or_, select, type_coerce
from sqlalchemy.orm import Session

from bridge.cdr.csvformat import BOOL_COLUMNS, HEADER, SOURCE_COLUMNS, TIME_COLUMNS, Formatters
from bridge.cdr.fastcsv import FastLines, Rendered, chunk_select, keyset, last_key, suspect_ids, whole_rows
from bridge.db.models import Cdr, Company

CHUNK = 5000
_DISCONNECTED = SOURCE_COLUMNS.index("disconnected_at")


def cdr_select(*conditions: ColumnElement[bool], by_time: bool = True) -> Select[Any]:
    """``SELECT <SOURCE_COLUMNS>, company.timezone FROM cdr LEFT JOIN company WHERE ... ORDER BY ...``.

    ``by_time``: order by (disconnected_at, id), which the disconnected_at index delivers without a sort
    (a period export streams from the first row, with no temporary B-tree); else by id (the feed).
    """
    stmt = select(*source_columns(), Company.timezone).outerjoin(Company, Company.id == Cdr.company_id)
    if conditions:
        stmt = stmt.where(and_(*conditions))
    return stmt.order_by(Cdr.disconnected_at, Cdr.id) if by_time else stmt.order_by(Cdr.id)


def source_columns() -> list[ColumnElement[Any]]:
    """The Cdr columns in :data:`SOURCE_COLUMNS` order, typed for raw reads.

    Times come back as the driver gives them (SQLite: text, rendered by
    :class:`~bridge.cdr.csvformat.TimeRenderer` without parsing) and flags as plain integers: the
    per-row SQLAlchemy result processing is the largest cost of a million-row export otherwise.
    """
    columns: list[ColumnElement[Any]] = []
    for name in SOURCE_COLUMNS:
        column = getattr(Cdr, name)
        if name in TIME_COLUMNS:
            column = type_coerce(column, String).label(name)
        elif name in BOOL_COLUMNS:
            column = type_coerce(column, Integer).label(name)
        columns.append(column)
    return columns


def period_filter(
    start: dt.datetime,
    end: dt.datetime,
    *,
    company: str | None = None,
    moderator: str | None = None,
) -> list[ColumnElement[bool]]:
    """Conditions for CDRs disconnected in ``[start, end)`` (naive UTC), optionally one company / moderator.

    ``company`` matches the company name recorded on the CDR; ``moderator`` matches the subscriber id
    (digits) or the moderator ident (login name or mobile).
    """
    return [Cdr.disconnected_at >= start, *scope_filter(end, company=company, moderator=moderator)]


def scope_filter(
    end: dt.datetime, *, company: str | None = None, moderator: str | None = None
) -> list[ColumnElement[bool]]:
    """:func:`period_filter` without its lower bound (the fast path starts each chunk at its own key)."""
    conditions: list[ColumnElement[bool]] = [Cdr.disconnected_at < end]
    if company:
        conditions.append(Cdr.company_name == company)
    if moderator:
        if moderator.isdigit():
            conditions.append(or_(Cdr.subscriber_id == int(moderator), Cdr.moderator_ident == moderator))
        else:
            conditions.append(Cdr.moderator_ident == moderator)
    return conditions


def stream_rows(session: Session, stmt: Select[Any], *, chunk: int = CHUNK) -> Iterator[Sequence[Any]]:
    """Yield the rows of ``stmt`` chunk by chunk (constant memory).

    Core execution on the session's connection (same transaction, no ORM objects). On SQLite the
    driver's own tuples are read from the cursor with ``fetchmany``: the columns carry no result
    processing (see :func:`source_columns`) and SQLite's result does not pre-fetch, so skipping the
    Row wrapping saves a fifth of an export's CPU. Elsewhere (PostgreSQL: a server-side cursor whose
    result buffers ahead) the rows come through ``yield_per`` partitions.
    """
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        result = connection.execute(stmt)
        try:
            cursor = result.cursor
            while rows := cursor.fetchmany(chunk):
                yield from rows
        finally:
            result.close()
        return
    result = connection.execute(stmt.execution_options(yield_per=chunk, stream_results=True))
    for partition in result.partitions():
        yield from partition


def write_csv(
    rows: Iterator[Sequence[Any]],
    out: TextIO,
    *,
    on_progress: Callable[[int], None] | None = None,
    header: bool = True,
) -> int:
    """Write ``rows`` (source columns + time-zone name) as CSV to ``out``; returns the number of rows.

    The generic path (any database, any row source). ``on_progress(n)`` is called after every chunk of
    ``n`` rows written.
    """
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(HEADER)
    formatters = Formatters()
    tz_at = len(SOURCE_COLUMNS)
    count = 0
    while chunk := list(itertools.islice(rows, CHUNK)):
        writer.writerows([formatters(row[tz_at])(row) for row in chunk])
        count += len(chunk)
        if on_progress is not None:
            on_progress(len(chunk))
    return count


def write_fast(
    session: Session,
    out: TextIO,
    *,
    start: dt.datetime,
    conditions: Sequence[ColumnElement[bool]],
    on_progress: Callable[[int], None] | None = None,
    header: bool = True,
    chunk: int = CHUNK,
    overlap: bool = True,
) -> int:
    """:func:`write_csv` of the CDRs disconnected from ``start`` on that match ``conditions`` (no lower bound on
    ``disconnected_at``: see :func:`scope_filter`), on SQLite, via :mod:`bridge.cdr.fastcsv` (same bytes).

    This thread runs the chunk queries (SQLite works through a chunk without holding the GIL) and writes,
    while one worker thread turns the previous chunk into CSV text (pure Python, no database), so the two
    overlap. All the queries run in one read transaction: one snapshot, as a single query would see.
    Memory holds at most three chunks. Lines that may need CSV quoting are re-read and written by the generic path here.
    ``overlap=False`` formats in this thread instead (same output; for a machine with one free core).
    """
    connection = session.connection()
    raw = connection.connection.dbapi_connection
    assert raw is not None
    began = not raw.in_transaction
    if began:
        raw.execute("BEGIN")  # deferred: the first read below takes the snapshot every chunk shares
    try:
        zones = {str(cid): name for cid, name in connection.execute(select(Company.id, Company.timezone))}
        if header:
            csv.writer(out, lineterminator="\n").writerow(HEADER)
        fast = FastLines(zones)
        stmt = chunk_select(conditions, limit=chunk)
        processor = DateTime().bind_processor(connection.dialect)
        stored_start = processor(start) if processor is not None else str(start)
        count = 0

        def finish(done: Rendered) -> None:
            nonlocal count
            out.write(done.text if done.clean else "".join(_requoted(session, done.lines)))
            count += len(done.lines)
            if on_progress is not None:
                on_progress(len(done.lines))

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdr-export") if overlap else _Inline() as worker:
            pending: Future[Rendered] | None = None
            key: tuple[str, int] = (stored_start, -1)  # (start, -1) < every row from start on
            while True:
                rows, text = connection.execute(stmt, {"k_at": key[0], "k_id": key[1]}).one()
                if not rows:
                    break
                if not whole_rows(text, rows):  # a text holds the separator: this chunk through the generic path
                    if pending is not None:
                        finish(pending.result())
                        pending = None
                    lines, key = _generic_chunk(session, conditions, key, rows)
                    finish(Rendered("".join(lines), lines, True))
                else:
                    key = last_key(text)
                    submitted = worker.submit(fast.render, text)
                    if pending is not None:
                        finish(pending.result())
                    pending = submitted
                if rows < chunk:
                    break
            if pending is not None:
                finish(pending.result())
    finally:
        if began and raw.in_transaction:
            raw.commit()  # ends the read transaction this function began (nothing was written)
    return count


class _Inline:
    """A stand-in for a one-thread executor that runs each task at once, in the calling thread."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[[str], Rendered], arg: str) -> Future[Rendered]:
        future: Future[Rendered] = Future()
        future.set_result(fn(arg))
        return future


def _generic_chunk(
    session: Session, conditions: Sequence[ColumnElement[bool]], key: tuple[str, int], rows: int
) -> tuple[list[str], tuple[str, int]]:
    """The ``rows`` CDRs after ``key`` rendered by the generic path, and the key of the last one."""
    stmt = cdr_select(*conditions, *keyset()).limit(rows)
    lines: list[str] = []
    last: Sequence[Any] = ()
    for last in session.connection().execute(stmt, {"k_at": key[0], "k_id": key[1]}):
        lines.append(_generic_line(last))
    return lines, (str(last[_DISCONNECTED]), int(last[0]))


def _generic_line(row: Sequence[Any]) -> str:
    """One CDR row (source columns + time-zone name) as the generic path writes it."""
    buffer = io.StringIO()
    write_csv(iter([row]), buffer, header=False)
    return buffer.getvalue()


def _requoted(session: Session, lines: list[str]) -> list[str]:
    """``lines`` with those that may need CSV quoting replaced by the generic path's rendering."""
    suspects = suspect_ids(lines)
    if suspects:
        for row in stream_rows(session, cdr_select(Cdr.id.in_(list(suspects)))):
            lines[suspects[row[0]]] = _generic_line(row)
    return lines


def count_rows(session: Session, conditions: Sequence[ColumnElement[bool]]) -> int:
    """How many CDRs match (for the progress bar)."""
    stmt = select(func.count(Cdr.id))
    if conditions:
        stmt = stmt.where(and_(*conditions))
    return int(session.scalar(stmt) or 0)


def export_csv(
    session: Session,
    out: TextIO,
    *,
    start: dt.datetime,
    end: dt.datetime,
    company: str | None = None,
    moderator: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Export the CDRs disconnected in ``[start, end)`` (naive UTC) as CSV with a header; returns the row count.

    On SQLite through :func:`write_fast`, elsewhere (PostgreSQL) through :func:`write_csv`: same bytes.
    ``on_progress(n)`` is called after each chunk of ``n`` rows.
    """
    if session.connection().dialect.name == "sqlite":
        scope = scope_filter(end, company=company, moderator=moderator)
        return write_fast(session, out, start=start, conditions=scope, on_progress=on_progress)
    stmt = cdr_select(*period_filter(start, end, company=company, moderator=moderator))
    return write_csv(stream_rows(session, stmt), out, on_progress=on_progress)
