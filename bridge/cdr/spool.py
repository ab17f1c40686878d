"""Hourly CDR files, their correction files and the nightly summary file, written to ``<data_dir>/spool/cdr``.

File ``<node>_<YYYYmmddHH>.csv`` (hour in UTC) holds, under the usual header, the CDRs disconnected in that
hour and written before the file was cut (``created_at <= cut``, the cut being :data:`SETTLE` before the
file is written, kept as ``CdrFile.created_at``). A quiet hour still gets a file (header only), so the
provider can tell "no calls" from "file lost".

A CDR that reaches the database, or changes, after its hour's file was cut (a leg that ended at 10:59:59
whose record was written at 11:07, a record refreshed by ``write_cdr``, the run's completion stamped by
``complete_run``) goes into a *correction file* of its hour, ``<node>_<YYYYmmddHH>_corr<N>.csv`` (N = 1, 2,
... per hour), cut in the next hourly run: same header, the current version of each such CDR. What a
billing provider expects: the hour file plus its corrections hold every CDR of the hour, a CDR id seen
again replaces the earlier line, and the distinct name says "correction" without reopening a file already
processed. Correction files are ``CdrFile`` rows of kind ``cdr`` like the hour files, so the same ledger
delivers each exactly once per target. Each run takes the CDRs touched (``created_at`` or ``updated_at``)
in ``(previous cut, cut]``, so each change is sent once. Only CDRs before the very first file ever cut are
left to ``bridge cdr export``. Files are written under a temporary name, fsynced and renamed, then
recorded; a file re-written after a crash before the record commit has the same name and content.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from bridge.cdr.export import cdr_select, stream_rows, write_csv
from bridge.cdr.summary import summary_rows
from bridge.config import Config
from bridge.db.models import Cdr, CdrFile

HOUR = dt.timedelta(hours=1)
SETTLE = dt.timedelta(seconds=60)
"""A file is cut this long before it is written: a CDR stamped just before the cut but committed just after
would otherwise be visible to no file. Transactions that stay open longer than this do not exist here."""
KIND_CDR = "cdr"
KIND_SUMMARY = "summary"


def spool_dir(config: Config) -> Path:
    return config.data_path / "spool" / "cdr"


def floor_hour(when: dt.datetime) -> dt.datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def hour_file_name(node: str, hour: dt.datetime) -> str:
    return f"{node}_{hour:%Y%m%d%H}.csv"


def summary_file_name(node: str, day: dt.date) -> str:
    return f"{node}_summary_{day:%Y%m%d}.csv"


def hours_to_write(session: Session, now: dt.datetime) -> list[dt.datetime]:
    """The hours whose files are due at ``now``: every hour after the last file up to the previous hour.

    With no file yet, only the previous hour (older CDRs predate the push and stay available to export).
    """
    previous = floor_hour(now) - HOUR
    last = session.scalar(select(func.max(CdrFile.period_start)).where(CdrFile.kind == KIND_CDR))
    if last is None:
        return [previous]
    hours = []
    hour = floor_hour(last) + HOUR
    while hour <= previous:
        hours.append(hour)
        hour += HOUR
    return hours


def write_hour_file(session: Session, *, spool: Path, node: str, hour: dt.datetime, now: dt.datetime) -> CdrFile:
    """Write (once) the file of ``hour`` (naive UTC) at ``now``; returns its CdrFile (flushed, not committed).

    The cut (``CdrFile.created_at``) is ``now - SETTLE``.
    """
    hour = floor_hour(hour)
    name = hour_file_name(node, hour)
    existing = session.scalars(select(CdrFile).where(CdrFile.name == name)).one_or_none()
    if existing is not None:
        return existing
    cut = now - SETTLE
    prev_cut = session.scalar(select(func.max(CdrFile.created_at)).where(CdrFile.kind == KIND_CDR))
    if prev_cut is not None and prev_cut > cut:
        cut = prev_cut  # cuts never go backwards (a clock step back): nothing is counted twice
    own = cdr_select(
        Cdr.disconnected_at >= hour, Cdr.disconnected_at < hour + HOUR, Cdr.created_at <= cut, by_time=False
    )
    rows, digest = _write_atomically(spool / name, lambda out: write_csv(stream_rows(session, own), out))
    record = CdrFile(name=name, kind=KIND_CDR, period_start=hour, rows=rows, sha256=digest, created_at=cut)
    session.add(record)
    session.flush()
    return record


def correction_file_name(node: str, hour: dt.datetime, number: int) -> str:
    return f"{node}_{hour:%Y%m%d%H}_corr{number}.csv"


def write_corrections(
    session: Session, *, spool: Path, node: str, prev_cut: dt.datetime | None, cut: dt.datetime
) -> list[CdrFile]:
    """Correction files for the CDRs touched in ``(prev_cut, cut]`` whose hour file was cut by ``prev_cut``.

    One file per such hour, named :func:`correction_file_name` with the next free number; returns them
    (flushed, not committed). Touched CDRs of hours without a file yet wait for their hour file; CDRs of
    hours before the first file are left to the export.
    """
    if prev_cut is None or cut <= prev_cut:
        return []
    touched = or_(
        and_(Cdr.created_at > prev_cut, Cdr.created_at <= cut),
        and_(Cdr.updated_at.is_not(None), Cdr.updated_at > prev_cut, Cdr.updated_at <= cut),
    )
    hours = sorted({floor_hour(at) for at in session.scalars(select(Cdr.disconnected_at).where(touched)) if at})
    records = []
    for hour in hours:
        cut_files = session.scalars(
            select(CdrFile.name).where(
                CdrFile.kind == KIND_CDR, CdrFile.period_start == hour, CdrFile.created_at <= prev_cut
            )
        ).all()
        if hour_file_name(node, hour) not in cut_files:
            continue  # its hour file is not cut yet (or never will be): the CDRs go there, or to the export
        number = sum(1 for name in cut_files if name != hour_file_name(node, hour)) + 1
        name = correction_file_name(node, hour, number)
        if session.scalars(select(CdrFile).where(CdrFile.name == name)).one_or_none() is not None:
            continue
        stmt = cdr_select(Cdr.disconnected_at >= hour, Cdr.disconnected_at < hour + HOUR, touched, by_time=False)
        rows, digest = _write_atomically(
            spool / name, lambda out, stmt=stmt: write_csv(stream_rows(session, stmt), out)
        )
        record = CdrFile(name=name, kind=KIND_CDR, period_start=hour, rows=rows, sha256=digest, created_at=cut)
        session.add(record)
        session.flush()
        records.append(record)
    return records


def cut_at(session: Session, now: dt.datetime) -> dt.datetime:
    """The cut of files written at ``now``: ``now - SETTLE``, never before the last cut (a clock step back)."""
    prev_cut = last_cut(session)
    cut = now - SETTLE
    return prev_cut if prev_cut is not None and prev_cut > cut else cut


def last_cut(session: Session) -> dt.datetime | None:
    """The cut of the latest CDR file (hour or correction), or None before the first one."""
    return session.scalar(select(func.max(CdrFile.created_at)).where(CdrFile.kind == KIND_CDR))


def write_summary_file(session: Session, *, spool: Path, node: str, day: dt.date, now: dt.datetime) -> CdrFile:
    """Write (once) the usage summary of UTC ``day``; returns its CdrFile (flushed, not committed)."""
    name = summary_file_name(node, day)
    existing = session.scalars(select(CdrFile).where(CdrFile.name == name)).one_or_none()
    if existing is not None:
        return existing
    header, rows = summary_rows(session, day=day)

    def write(out: Any) -> int:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return len(rows)

    count, digest = _write_atomically(spool / name, write)
    start = dt.datetime.combine(day, dt.time())
    record = CdrFile(name=name, kind=KIND_SUMMARY, period_start=start, rows=count, sha256=digest, created_at=now)
    session.add(record)
    session.flush()
    return record


def _write_atomically(path: Path, write: Any) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as out:
        rows = int(write(out))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return rows, sha256_of(path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
