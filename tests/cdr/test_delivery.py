"""The push with fake transports and a fake mailer, driven by explicit times (a fake clock)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr import DeliveryError, HostKeyError
from bridge.cdr.delivery import CdrPusher
from bridge.cdr.health import AlertDown, AlertRecovered
from bridge.cdr.writer import complete_run, write_cdr
from bridge.config import Config
from bridge.db.models import Cdr, CdrDelivery, CdrFile, CdrTargetHealth, ConferenceRun, EventLog, Leg
from tests.cdr.cdr_world import T0, Tenant, add_cdr, add_run_with_legs

H = dt.timedelta(hours=1)


class FakeTarget:
    """Stores uploads by name; ``down`` makes it fail like an unreachable server."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.files: dict[str, bytes] = {}
        self.uploads: list[str] = []
        self.down: Exception | None = None

    def upload(self, local: Path, remote_name: str) -> None:
        if self.down is not None:
            raise self.down
        self.uploads.append(remote_name)
        self.files[remote_name] = local.read_bytes()


class FakeMailer:
    def __init__(self) -> None:
        self.mails: list[tuple[str, str]] = []

    def send(self, subject: str, body: str) -> None:
        self.mails.append((subject, body))


def make(config: Config, factory: sessionmaker[Session]) -> tuple[CdrPusher, dict[str, FakeTarget], FakeMailer]:
    targets = {name: FakeTarget(name) for name in ("primary", "backup", "sums")}
    mailer = FakeMailer()
    return CdrPusher(config, factory, transports=dict(targets), mailer=mailer), targets, mailer


def at(hour: int, minute: int = 5) -> dt.datetime:
    """Run time on the day of T0 (the hourly job runs at :05)."""
    return T0.replace(hour=hour, minute=minute)


def csv_ids(data: bytes) -> list[int]:
    return [int(r["id"]) for r in csv.DictReader(io.StringIO(data.decode()))]


def test_hour_file_has_exact_content_and_second_push_sends_nothing(
    cdr_config: Config, factory: sessionmaker[Session], tenant: Tenant
) -> None:
    pusher, targets, _ = make(cdr_config, factory)
    with factory() as s:
        inside = add_cdr(s, company_id=tenant.company_id, disconnected_at=at(10, 30), created_at=at(10, 30))
        add_cdr(s, company_id=tenant.company_id, disconnected_at=at(11, 0), created_at=at(11, 0))  # next hour
        add_cdr(s, company_id=tenant.company_id, disconnected_at=at(9, 59), created_at=at(9, 59))  # previous hour
        s.commit()
    report = pusher.run_hourly(at(11))
    assert report.written == ["nodeA_2026032810.csv"]
    assert report.delivered == [("nodeA_2026032810.csv", "primary")]
    spooled = (cdr_config.data_path / "spool" / "cdr" / "nodeA_2026032810.csv").read_bytes()
    assert targets["primary"].files == {"nodeA_2026032810.csv": spooled}
    assert csv_ids(spooled) == [inside.id]
    assert b"2026-03-28T11:30:00+01:00" in spooled  # Acme renders in Paris time

    again = pusher.run_hourly(at(11, 30))
    assert again.written == [] and again.delivered == []
    assert targets["primary"].uploads == ["nodeA_2026032810.csv"]
    assert targets["backup"].uploads == []
    with factory() as s:
        record = s.scalars(select(CdrFile)).one()
        assert (record.rows, len(record.sha256)) == (1, 64)


def test_quiet_hour_still_produces_a_header_only_file(cdr_config: Config, factory: sessionmaker[Session]) -> None:
    pusher, targets, _ = make(cdr_config, factory)
    pusher.run_hourly(at(3))
    data = targets["primary"].files["nodeA_2026032802.csv"]
    assert data.decode().count("\n") == 1 and data.startswith(b"id,created_at,")


def test_target_down_for_hours_gets_every_missing_hour_once_with_alert_and_recovery(
    cdr_config: Config, factory: sessionmaker[Session], tenant: Tenant
) -> None:
    pusher, targets, mailer = make(cdr_config, factory)
    for target in ("primary", "backup"):
        targets[target].down = DeliveryError(f"{target}: connection refused")
    pusher.run_hourly(at(9))  # first file
    reports = []
    for hour in range(10, 14):
        with factory() as s:
            add_cdr(s, company_id=tenant.company_id, disconnected_at=at(hour - 1, 20), created_at=at(hour - 1, 20))
            s.commit()
        reports.append(pusher.run_hourly(at(hour)))
    assert all(r.delivered == [] for r in reports)
    assert reports[-1].pending == 5
    # alert_after_s = 2 h: the outage started at 09:05, so the 11:05 run alerts, once per target
    downs = [a for r in reports for a in r.alerts if isinstance(a, AlertDown)]
    assert sorted(a.target for a in downs) == ["backup", "primary"]
    assert all(a.since == at(9) for a in downs)
    assert any(isinstance(a, AlertDown) for a in reports[1].alerts)
    assert len(mailer.mails) == 2 and "DOWN" in mailer.mails[0][0]

    targets["primary"].down = None
    back = pusher.run_hourly(at(14))
    expected = [f"nodeA_20260328{h:02d}.csv" for h in range(8, 14)]
    assert targets["primary"].uploads == expected  # every missing hour, oldest first, once
    assert [a for a in back.alerts if isinstance(a, AlertRecovered)] == [AlertRecovered("primary", at(9), at(14))]
    assert "recovered" in mailer.mails[-1][0]
    pusher.run_hourly(at(14, 30))
    pusher.retry(at(15, 0))
    assert targets["primary"].uploads == expected
    with factory() as s:
        assert s.scalar(select(EventLog.kind).where(EventLog.kind == "cdr_alert").limit(1)) == "cdr_alert"
        assert len(s.scalars(select(CdrDelivery)).all()) == 6


def test_failover_to_backup_and_the_file_is_never_sent_twice(
    cdr_config: Config, factory: sessionmaker[Session]
) -> None:
    pusher, targets, _ = make(cdr_config, factory)
    targets["primary"].down = DeliveryError("primary: timed out")
    first = pusher.run_hourly(at(10))
    assert first.delivered == [("nodeA_2026032809.csv", "backup")]
    targets["primary"].down = None
    second = pusher.run_hourly(at(11))
    assert second.delivered == [("nodeA_2026032810.csv", "primary")]
    assert targets["primary"].uploads == ["nodeA_2026032810.csv"]
    assert targets["backup"].uploads == ["nodeA_2026032809.csv"]


def test_backoff_skips_a_failing_target_until_due(cdr_config: Config, factory: sessionmaker[Session]) -> None:
    pusher, targets, _ = make(cdr_config, factory)
    targets["primary"].down = targets["backup"].down = DeliveryError("down")
    pusher.run_hourly(at(10))
    targets["primary"].down = targets["backup"].down = None
    assert pusher.retry(at(10, 5) + dt.timedelta(seconds=30)).delivered == []  # inside the 60 s backoff
    assert pusher.retry(at(10, 6) + dt.timedelta(seconds=1)).delivered == [("nodeA_2026032809.csv", "primary")]


def test_refused_host_key_alerts_at_once_and_sends_nothing(cdr_config: Config, factory: sessionmaker[Session]) -> None:
    pusher, targets, mailer = make(cdr_config, factory)
    targets["primary"].down = HostKeyError("primary: host key does not match known_hosts")
    targets["backup"].down = DeliveryError("backup down")
    report = pusher.run_hourly(at(10))
    assert [type(a) for a in report.alerts] == [AlertDown]
    assert "host key" in mailer.mails[0][1]
    assert targets["primary"].files == {}


def test_late_cdr_goes_into_a_correction_file_of_its_hour_exactly_once(
    cdr_config: Config, factory: sessionmaker[Session], tenant: Tenant
) -> None:
    pusher, targets, _ = make(cdr_config, factory)
    pusher.run_hourly(at(10))  # cuts 09:00 at 10:04
    with factory() as s:
        late = add_cdr(s, company_id=tenant.company_id, disconnected_at=at(9, 59), created_at=at(10, 7))
        own = add_cdr(s, company_id=tenant.company_id, disconnected_at=at(10, 30), created_at=at(10, 30))
        s.commit()
    report = pusher.run_hourly(at(11))
    assert report.written == ["nodeA_2026032810.csv", "nodeA_2026032809_corr1.csv"]
    pusher.run_hourly(at(12))
    pusher.run_hourly(at(12, 30))
    files = targets["primary"].files
    assert csv_ids(files["nodeA_2026032809.csv"]) == []
    assert csv_ids(files["nodeA_2026032809_corr1.csv"]) == [late.id]
    assert csv_ids(files["nodeA_2026032810.csv"]) == [own.id]
    assert csv_ids(files["nodeA_2026032811.csv"]) == []
    assert sorted(targets["primary"].uploads) == sorted(set(targets["primary"].uploads))  # each file once
    assert len(files) == 4


def test_refreshed_cdrs_are_corrected_once_per_change(
    cdr_config: Config, factory: sessionmaker[Session], tenant: Tenant
) -> None:
    pusher, targets, _ = make(cdr_config, factory)
    with factory() as s:
        run, legs = add_run_with_legs(s, tenant, legs=2)
        run.started_at = at(9, 0)
        for leg in legs:
            leg.joined_at, leg.disconnected_at = at(9, 10), at(9, 40)
            write_cdr(s, leg, now=at(9, 40))
        s.commit()
        ids = sorted(c.id for c in s.scalars(select(Cdr)))
    pusher.run_hourly(at(10))
    assert csv_ids(targets["primary"].files["nodeA_2026032809.csv"]) == ids
    with factory() as s:  # the run ends at 10:20: its CDRs get the completion time and result
        run = s.get(ConferenceRun, run.id)
        assert run is not None
        run.ended_at, run.result = at(10, 20), "completed"
        complete_run(s, run, now=at(10, 20))
        s.commit()
    report = pusher.run_hourly(at(11))
    assert report.written == ["nodeA_2026032810.csv", "nodeA_2026032809_corr1.csv"]
    rows = list(csv.DictReader(io.StringIO(targets["primary"].files["nodeA_2026032809_corr1.csv"].decode())))
    assert [int(r["id"]) for r in rows] == ids
    assert {r["service_result"] for r in rows} == {"completed"}
    assert {r["service_completed_at"] for r in rows} == {"2026-03-28T11:20:00+01:00"}
    with factory() as s:  # one leg's CDR is refreshed again (e.g. a late cause): a second correction, one row
        leg = s.get(Leg, legs[0].id)
        assert leg is not None
        leg.cause = "late cause"
        write_cdr(s, leg, now=at(11, 30))
        s.commit()
    assert pusher.run_hourly(at(12)).written == ["nodeA_2026032811.csv", "nodeA_2026032809_corr2.csv"]
    rows = list(csv.DictReader(io.StringIO(targets["primary"].files["nodeA_2026032809_corr2.csv"].decode())))
    assert [(r["id"], r["cause"]) for r in rows] == [(str(ids[0]), "late cause")]
    assert pusher.run_hourly(at(13)).written == ["nodeA_2026032812.csv"]  # nothing changed: no correction
    assert pusher.run_hourly(at(13, 30)).written == []
    assert targets["primary"].uploads == [
        "nodeA_2026032809.csv",
        "nodeA_2026032809_corr1.csv",
        "nodeA_2026032810.csv",
        "nodeA_2026032809_corr2.csv",
        "nodeA_2026032811.csv",
        "nodeA_2026032812.csv",
    ]


def test_missed_hours_are_caught_up_after_the_engine_was_down(
    cdr_config: Config, factory: sessionmaker[Session], tenant: Tenant
) -> None:
    pusher, targets, _ = make(cdr_config, factory)
    pusher.run_hourly(at(8))
    with factory() as s:
        ids = [
            add_cdr(s, company_id=tenant.company_id, disconnected_at=at(h, 10), created_at=at(h, 10)).id
            for h in (8, 9, 10)
        ]
        s.commit()
    report = pusher.run_hourly(at(11, 40))  # no runs at 09:05 and 10:05
    assert report.written == ["nodeA_2026032808.csv", "nodeA_2026032809.csv", "nodeA_2026032810.csv"]
    got = [csv_ids(targets["primary"].files[name]) for name in report.written]
    assert got == [[ids[0]], [ids[1]], [ids[2]]]


def test_summary_goes_to_summary_targets_only(
    cdr_config: Config, factory: sessionmaker[Session], tenant: Tenant
) -> None:
    pusher, targets, _ = make(cdr_config, factory)
    with factory() as s:
        add_cdr(
            s,
            company_id=tenant.company_id,
            subscriber_id=tenant.subscriber_id,
            moderator_name="Alice",
            service_id=1,
            disconnected_at=at(10, 30),
        )
        s.commit()
    report = pusher.run_summary(T0.date(), at(23, 0) + dt.timedelta(hours=3))
    assert report.delivered == [("nodeA_summary_20260328.csv", "sums")]
    assert targets["primary"].uploads == [] and targets["backup"].uploads == []
    rows = list(csv.DictReader(io.StringIO(targets["sums"].files["nodeA_summary_20260328.csv"].decode())))
    kinds = [r["record"] for r in rows]
    assert kinds == ["subscriber_added", "subscriber_added", "subscriber_usage", "company_usage"]
    usage = rows[2]
    # joined 09:50:10, left 10:30:00
    assert (usage["moderator"], usage["events"], usage["seconds"], usage["minutes"]) == ("Alice", "1", "2390", "40")


def test_a_restart_neither_re_alerts_nor_forgets_an_outage(cdr_config: Config, factory: sessionmaker[Session]) -> None:
    targets = {name: FakeTarget(name) for name in ("primary", "backup", "sums")}
    mailer = FakeMailer()

    def restart() -> CdrPusher:  # a new process: only the database carries over
        return CdrPusher(cdr_config, factory, transports=dict(targets), mailer=mailer)

    for target in ("primary", "backup"):
        targets[target].down = DeliveryError(f"{target} down")
    restart().run_hourly(at(9))  # failing since 09:05
    restart().run_hourly(at(10))
    assert mailer.mails == []
    with factory() as s:
        stored = {h.target: (h.state, h.failing_since) for h in s.scalars(select(CdrTargetHealth))}
    assert stored["primary"] == ("failing", at(9))
    report = restart().run_hourly(at(11))  # 2 h after the first failure: DOWN, once per target
    assert [type(a) for a in report.alerts] == [AlertDown, AlertDown]
    for hour in (12, 13):
        assert restart().run_hourly(at(hour)).alerts == []  # still down: no second mail after the restart
    assert len(mailer.mails) == 2
    targets["primary"].down = None
    report = restart().run_hourly(at(14))
    recovered = [a for a in report.alerts if isinstance(a, AlertRecovered)]
    assert [(a.target, a.since) for a in recovered] == [("primary", at(9))]  # the outage was not forgotten
    assert len(report.delivered) == 6 and report.pending == 0
    with factory() as s:
        stored = {h.target: (h.state, h.failing_since) for h in s.scalars(select(CdrTargetHealth))}
    assert stored["primary"] == ("up", None) and stored["backup"] == ("down", at(9))


def test_backoff_survives_a_restart(cdr_config: Config, factory: sessionmaker[Session]) -> None:
    targets = {name: FakeTarget(name) for name in ("primary", "backup", "sums")}
    targets["primary"].down = targets["backup"].down = DeliveryError("down")
    CdrPusher(cdr_config, factory, transports=dict(targets), mailer=FakeMailer()).run_hourly(at(9))
    targets["primary"].down = targets["backup"].down = None
    again = CdrPusher(cdr_config, factory, transports=dict(targets), mailer=FakeMailer())
    assert again.retry(at(9) + dt.timedelta(seconds=30)).delivered == []  # the 60 s backoff was kept
    assert again.retry(at(9) + dt.timedelta(seconds=61)).delivered == [("nodeA_2026032808.csv", "primary")]
