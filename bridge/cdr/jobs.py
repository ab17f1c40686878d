"""The CDR jobs on the engine's APScheduler (CONTRACTS §4).

We use APScheduler 3's ``BackgroundScheduler`` (the engine creates and starts it): the jobs block on
the network (rsync, SSH, FTP, SMTP) and on large queries, so they belong on the scheduler's worker
threads, never on the asyncio loop that carries the media. Jobs:

- ``cdr-hourly`` at ``cdr.push_minute`` past every hour: cut the previous hour's file (and any missed
  hour), push all pending files;
- ``cdr-retry`` every ``cdr.retry_min_s``: push pending files to targets whose backoff has expired, so a
  target that comes back is served within minutes, not at the next hour;
- ``cdr-nightly`` at ``cdr.summary_time`` (in the scheduler's time zone; the engine runs its scheduler in
  UTC): write and push the previous UTC day's usage summary, then the retention purge.

Every job first asks ``is_active()``: on the standby node of an HA pair nothing is written or pushed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.delivery import CdrPusher
from bridge.cdr.retention import purge
from bridge.cdr.spool import spool_dir
from bridge.config import Config
from bridge.db.models import utcnow

log = logging.getLogger(__name__)


def install_jobs(
    scheduler: Any,
    config: Config,
    session_factory: sessionmaker[Session],
    *,
    is_active: Callable[[], bool],
    pusher: CdrPusher | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> CdrPusher:
    """Add the CDR jobs to ``scheduler`` (an APScheduler 3 scheduler); returns the pusher they share.

    ``clock`` returns naive UTC (tests may pass a fake one).
    """
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    cdr = config.cdr
    pusher = pusher or CdrPusher(config, session_factory)

    def hourly() -> None:
        if is_active() and cdr.push_enabled:
            report = pusher.run_hourly(clock())
            log.info("CDR hourly: wrote %s, delivered %d, pending %d", report.written, len(report.delivered),
                     report.pending)  # fmt: skip

    def retry() -> None:
        if is_active() and cdr.push_enabled:
            pusher.retry(clock())

    def nightly() -> None:
        if not is_active():
            return
        now = clock()
        if cdr.push_enabled:
            pusher.run_summary(now.date() - dt.timedelta(days=1), now)
        purge(session_factory, spool=spool_dir(config), retention_days=cdr.retention_days, now=now)

    hh, mm = (int(part) for part in cdr.summary_time.split(":"))
    common = {"max_instances": 1, "coalesce": True, "replace_existing": True}
    scheduler.add_job(hourly, CronTrigger(minute=cdr.push_minute), id="cdr-hourly", misfire_grace_time=1800, **common)
    scheduler.add_job(retry, IntervalTrigger(seconds=cdr.retry_min_s), id="cdr-retry", misfire_grace_time=60, **common)
    scheduler.add_job(nightly, CronTrigger(hour=hh, minute=mm), id="cdr-nightly", misfire_grace_time=3600, **common)
    return pusher
