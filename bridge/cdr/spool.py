"""Hourly CDR files and the nightly summary file, written to ``<data_dir>/spool/cdr`` and recorded as CdrFile.

File ``<node>_<YYYYmmddHH>.csv`` (hour in UTC) holds, under the usual header:

1. the CDRs disconnected in that hour and written before the file was cut (``created_at <= cut``, the
   cut being :data:`SETTLE` before the file is written, kept as ``CdrFile.created_at``);
2. *late* CDRs: disconnected in an earlier hour but written after the previous file was cut
   (``prev_cut < created_at <= cut``), e.g. a leg that ended at 10:59:59 whose record was written at
   11:07, after the 10:00 file had been cut at 11:04.

Files are cut in hour order (missing hours are caught up oldest first), so every CDR lands in exactly one
file: either its own hour's or the first one cut after it was written. Only CDRs before the very first
file ever cut are left to ``bridge cdr export``. A quiet hour still gets a file (header only), so the
provider can tell "no calls" from "file lost". The file is written under a temporary name, fsynced and
renamed, then recorded; a file re-written after a crash before the record commit has the same name.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
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
    streams: list[Iterator[Sequence[Any]]] = [stream_rows(session, own)]
    if prev_cut is not None:
        late = cdr_select(Cdr.disconnected_at < hour, Cdr.created_at > prev_cut, Cdr.created_at <= cut, by_time=False)
        streams.append(stream_rows(session, late))
    rows, digest = _write_atomically(spool / name, lambda out: write_csv(_chain(streams), out))
    record = CdrFile(name=name, kind=KIND_CDR, period_start=hour, rows=rows, sha256=digest, created_at=cut)
    session.add(record)
    session.flush()
    return record


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


def _chain(streams: Iterable[Iterator[Sequence[Any]]]) -> Iterator[Sequence[Any]]:
    for stream in streams:
        yield from stream


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
