"""Retention: CDRs, CdrFile/CdrDelivery rows and spooled files older than ``retention_days`` go, nightly.

A CDR's age is its ``disconnected_at`` (``created_at`` when unknown); a file's age is its period start.
Rows are deleted in batches (each committed) so a large purge never holds the database lock for long.
Spool files not recorded in the database are removed by the age their name encodes, and temporary
files left by a crash (``.name.tmp``) once they are a day old.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session, sessionmaker

from bridge.db.models import Cdr, CdrDelivery, CdrFile

log = logging.getLogger(__name__)

BATCH = 5000
_STAMP = re.compile(r"_(\d{8})(\d{2})?\.csv$")


@dataclass(frozen=True)
class PurgeReport:
    cdrs: int
    files: int
    spool_files: int


def purge(session_factory: sessionmaker[Session], *, spool: Path, retention_days: int, now: dt.datetime) -> PurgeReport:
    """Delete everything older than ``now - retention_days`` (naive UTC)."""
    cutoff = now - dt.timedelta(days=retention_days)
    old_cdr = or_(Cdr.disconnected_at < cutoff, (Cdr.disconnected_at.is_(None)) & (Cdr.created_at < cutoff))
    cdrs = 0
    while True:
        with session_factory() as session, session.begin():
            ids = session.scalars(select(Cdr.id).where(old_cdr).limit(BATCH)).all()
            if not ids:
                break
            session.execute(delete(Cdr).where(Cdr.id.in_(ids)))
            cdrs += len(ids)
    files = 0
    removed = 0
    with session_factory() as session, session.begin():
        old_files = session.execute(select(CdrFile.id, CdrFile.name).where(CdrFile.period_start < cutoff)).all()
        ids = [file_id for file_id, _ in old_files]
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            session.execute(delete(CdrDelivery).where(CdrDelivery.file_id.in_(chunk)))
            session.execute(delete(CdrFile).where(CdrFile.id.in_(chunk)))
        files = len(ids)
        for _, name in old_files:
            removed += _unlink(spool / name)
    if spool.is_dir():
        for path in spool.iterdir():
            if not path.is_file():
                continue
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                age = now - dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)
                if age > dt.timedelta(days=1):
                    removed += _unlink(path)
                continue
            match = _STAMP.search(path.name)
            if match is None:
                continue
            stamp = dt.datetime.strptime(match.group(1) + (match.group(2) or "00"), "%Y%m%d%H")
            if stamp < cutoff:
                removed += _unlink(path)
    if cdrs or files or removed:
        log.info("retention purge: %d CDRs, %d file records, %d spool files before %s", cdrs, files, removed, cutoff)
    return PurgeReport(cdrs=cdrs, files=files, spool_files=removed)


def _unlink(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    return 1
