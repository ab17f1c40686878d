"""Readings the engine's ``status()`` does not hold, taken from the database and the file system: the CDR files
each target still lacks, the portal's lockouts, the data directory's disk. Each is one small query (or one
``statvfs``) run off the event loop: in the exporter's scrape thread, or in an executor for the alarms.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from bridge.config import CdrTargetConfig
from bridge.db.models import Account, CdrDelivery, CdrFile, EventLog


@dataclass(frozen=True)
class CdrBacklog:
    """Files spooled for a target and not yet delivered to it; ``oldest_age_s`` is 0 when none are waiting."""

    target: str
    pending: int
    oldest_age_s: float


@dataclass(frozen=True)
class PortalCounts:
    lockouts: int
    """Lockouts recorded in the event log (``portal_lockout``) since the database was created."""
    locked_accounts: int
    """Accounts locked right now."""
    failed_logins: int
    """Failed sign-ins counted on the accounts (reset by a successful one)."""


@dataclass(frozen=True)
class DiskUsage:
    path: str
    total_bytes: int
    free_bytes: int

    @property
    def used_percent(self) -> float:
        return 100.0 * (self.total_bytes - self.free_bytes) / self.total_bytes if self.total_bytes else 0.0


@dataclass(frozen=True)
class Readings:
    cdr: tuple[CdrBacklog, ...] = ()
    portal: PortalCounts = field(default_factory=lambda: PortalCounts(0, 0, 0))
    disk: DiskUsage | None = None


def cdr_backlog(session: Session, targets: list[CdrTargetConfig], now: dt.datetime) -> tuple[CdrBacklog, ...]:
    """Per target: the files of its purpose that have no delivery row for it (the push's own definition)."""
    out = []
    for target in targets:
        delivered = exists().where(and_(CdrDelivery.file_id == CdrFile.id, CdrDelivery.target == target.name))
        count, oldest = session.execute(
            select(func.count(CdrFile.id), func.min(CdrFile.created_at)).where(
                CdrFile.kind == target.purpose, ~delivered
            )
        ).one()
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        out.append(CdrBacklog(target.name, int(count or 0), age))
    return tuple(out)


def portal_counts(session: Session, now: dt.datetime) -> PortalCounts:
    lockouts = session.scalar(select(func.count()).select_from(EventLog).where(EventLog.kind == "portal_lockout"))
    locked = session.scalar(select(func.count()).select_from(Account).where(Account.locked_until > now))
    failed = session.scalar(select(func.coalesce(func.sum(Account.failed_logins), 0)))
    return PortalCounts(int(lockouts or 0), int(locked or 0), int(failed or 0))


def disk_usage(path: Path) -> DiskUsage | None:
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return DiskUsage(str(path), stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize)


def take(session: Session, targets: list[CdrTargetConfig], data_dir: Path, now: dt.datetime) -> Readings:
    """All readings at once (``now``: naive UTC, like the database's stamps)."""
    return Readings(cdr_backlog(session, targets, now), portal_counts(session, now), disk_usage(data_dir))
