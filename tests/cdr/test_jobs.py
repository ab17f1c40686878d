from __future__ import annotations

import datetime as dt

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.delivery import CdrPusher
from bridge.cdr.jobs import install_jobs
from bridge.config import Config
from bridge.db.models import Cdr, CdrFile
from tests.cdr.cdr_world import T0, Tenant, add_cdr


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class NullTarget:
    name = "null"

    def __init__(self) -> None:
        self.uploads: list[str] = []

    def upload(self, local: object, remote_name: str) -> None:
        self.uploads.append(remote_name)


def test_jobs_are_installed_and_respect_the_active_role(
    cdr_config: Config, factory: sessionmaker[Session], tenant: Tenant
) -> None:
    scheduler = BackgroundScheduler(timezone="UTC")
    active = [False]
    clock = Clock(T0.replace(hour=11, minute=5))
    target = NullTarget()
    pusher = CdrPusher(cdr_config, factory, transports={"primary": target, "backup": target, "sums": target})
    install_jobs(scheduler, cdr_config, factory, is_active=lambda: active[0], pusher=pusher, clock=clock)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"cdr-hourly", "cdr-retry", "cdr-nightly"}
    assert "minute='5'" in str(jobs["cdr-hourly"].trigger)
    assert "hour='2', minute='0'" in str(jobs["cdr-nightly"].trigger)

    jobs["cdr-hourly"].func()  # standby: nothing happens
    with factory() as s:
        assert s.scalars(select(CdrFile)).all() == []
    active[0] = True
    jobs["cdr-hourly"].func()
    assert target.uploads == ["nodeA_2026032810.csv"]

    with factory() as s:
        add_cdr(s, company_id=tenant.company_id, disconnected_at=T0 - dt.timedelta(days=200))
        s.commit()
    clock.now = T0.replace(hour=23) + dt.timedelta(hours=3)  # 02:00 the next day
    jobs["cdr-nightly"].func()
    assert target.uploads[-1] == "nodeA_summary_20260328.csv"
    with factory() as s:
        assert s.scalars(select(Cdr)).all() == []  # the 200-day-old CDR was purged
