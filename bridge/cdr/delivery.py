"""The push: spool files -> delivery targets, exactly once, with failover, backoff and alert mail.

What "several targets with failover" means here: **primary + backup**. ``[[cdr.targets]]`` are tried in
the order written; a file counts as delivered once the first reachable target has it, and it is never
sent again, to that target or to another. The provider's collectors share one billing pipeline, so a
file that reached two of them would be billed twice; a primary down for hours therefore does not get
the hours its backup took when it returns (the ledger shows where each file went). With one target,
or when every target is down, the files wait in the spool and each later run retries all of them, oldest
first, so a target down for hours gets every missing hour, once, when it returns.

The ledger (``CdrDelivery``, unique per file and target) is committed right after each upload. A crash
between the rename on the server and that commit re-sends the same file under the same name (it
replaces itself), never a different one. Per-target health (:mod:`bridge.cdr.health`) gives the backoff
and the down / recovered mails; it is kept in ``cdr_target_health``, loaded at the start of every run and
saved after it and before each mail, so a restart neither re-alerts an outage nor forgets one.
``purpose = "summary"`` targets receive the nightly summary files the same way. Runs are serialised by
a lock file in the spool, so ``bridge cdr push --now`` and the engine's jobs never upload the same file
concurrently.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr import DeliveryError, HostKeyError
from bridge.cdr.alerts import Mailer, SmtpMailer, render_alert
from bridge.cdr.health import Alert, Delivered, Failed, HealthSnapshot, TargetHealth, TargetState
from bridge.cdr.spool import (
    KIND_CDR,
    KIND_SUMMARY,
    cut_at,
    hours_to_write,
    last_cut,
    spool_dir,
    write_corrections,
    write_hour_file,
    write_summary_file,
)
from bridge.cdr.transports import Transport, make_transport
from bridge.config import Config
from bridge.db.models import CdrDelivery, CdrFile, CdrTargetHealth, EventLog

log = logging.getLogger(__name__)


@dataclass
class PushReport:
    """What one run did (for the CLI, the logs and tests)."""

    written: list[str] = field(default_factory=list)
    delivered: list[tuple[str, str]] = field(default_factory=list)
    """(file name, target name) uploaded in this run."""
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(target name, error) in this run."""
    alerts: list[Alert] = field(default_factory=list)
    pending: int = 0
    """Files still undelivered after the run."""


class CdrPusher:
    """Writes the spool files and pushes them. One per process; thread-safe (runs are serialised).

    ``transports`` (name -> Transport) and ``mailer`` can be injected (tests); by default they are built
    from ``config.cdr.targets`` and ``config.alerts``. Every method takes ``now`` (naive UTC).
    """

    def __init__(
        self,
        config: Config,
        session_factory: sessionmaker[Session],
        *,
        transports: dict[str, Transport] | None = None,
        mailer: Mailer | None = None,
    ) -> None:
        self.config = config
        self.session_factory = session_factory
        self.spool = spool_dir(config)
        cdr = config.cdr
        self.targets = {
            KIND_CDR: [t.name for t in cdr.targets if t.purpose == "cdr"],
            KIND_SUMMARY: [t.name for t in cdr.targets if t.purpose == "summary"],
        }
        self.transports = transports or {t.name: make_transport(t, timeout_s=cdr.timeout_s) for t in cdr.targets}
        self.mailer: Mailer = mailer or SmtpMailer(config.alerts)
        self.health = {
            t.name: TargetHealth(
                t.name, alert_after_s=cdr.alert_after_s, retry_min_s=cdr.retry_min_s, retry_max_s=cdr.retry_max_s
            )
            for t in cdr.targets
        }
        self._lock = threading.Lock()

    # --- entry points (jobs and CLI) -------------------------------------------------------------

    def run_hourly(self, now: dt.datetime) -> PushReport:
        """Cut the files of every hour due at ``now`` (catching up missed hours) and the correction files of
        earlier hours (:func:`bridge.cdr.spool.write_corrections`), then push everything pending."""
        with self._serialised():
            report = PushReport()
            self._load_health()
            node = self.config.node.name
            with self.session_factory() as session, session.begin():
                prev_cut, cut = last_cut(session), cut_at(session, now)
                for hour in hours_to_write(session, now):
                    record = write_hour_file(session, spool=self.spool, node=node, hour=hour, now=now)
                    report.written.append(record.name)
                for record in write_corrections(session, spool=self.spool, node=node, prev_cut=prev_cut, cut=cut):
                    report.written.append(record.name)
            self._push(KIND_CDR, now, report)
            return report

    def run_summary(self, day: dt.date, now: dt.datetime) -> PushReport:
        """Write the usage summary of ``day`` (UTC) and push pending summaries."""
        with self._serialised():
            report = PushReport()
            self._load_health()
            with self.session_factory() as session, session.begin():
                record = write_summary_file(session, spool=self.spool, node=self.config.node.name, day=day, now=now)
                report.written.append(record.name)
            self._push(KIND_SUMMARY, now, report)
            return report

    def retry(self, now: dt.datetime) -> PushReport:
        """Push whatever is pending to targets whose backoff has expired (the frequent retry job)."""
        with self._serialised():
            report = PushReport()
            self._load_health()
            for kind in (KIND_CDR, KIND_SUMMARY):
                self._push(kind, now, report)
            return report

    # --- the push --------------------------------------------------------------------------------

    def pending(self, session: Session, kind: str) -> Sequence[CdrFile]:
        """Files of ``kind`` that no target of that purpose has yet, oldest first."""
        names = self.targets[kind]
        delivered = exists().where(CdrDelivery.file_id == CdrFile.id, CdrDelivery.target.in_(names))
        stmt = select(CdrFile).where(CdrFile.kind == kind, ~delivered).order_by(CdrFile.period_start, CdrFile.id)
        return session.scalars(stmt).all()

    def _push(self, kind: str, now: dt.datetime, report: PushReport) -> None:
        names = self.targets[kind]
        for name in names:
            self._alert(self.health[name].tick(now), report, now)
        if not names:
            return
        with self.session_factory() as session:
            files = self.pending(session, kind)
            left = len(files)
            for record in files:
                path = self.spool / record.name
                if not path.is_file():
                    log.error("CDR file %s is recorded but missing from %s; not delivered", record.name, self.spool)
                    continue
                for name in names:
                    health = self.health[name]
                    if not health.due(now):
                        continue
                    try:
                        self.transports[name].upload(path, record.name)
                    except Exception as exc:
                        if isinstance(exc, DeliveryError):
                            log.warning("CDR file %s to %s failed: %s", record.name, name, exc)
                        else:  # a bug or an unexpected library error: still just a failed attempt
                            log.exception("CDR file %s to %s failed unexpectedly", record.name, name)
                        report.failures.append((name, str(exc)))
                        security = isinstance(exc, HostKeyError)
                        self._alert(health.handle(Failed(now, str(exc), security=security)), report, now)
                        continue  # failover to the next target
                    self._record(session, record, name, now)
                    report.delivered.append((record.name, name))
                    left -= 1
                    self._alert(health.handle(Delivered(now)), report, now)
                    break
            report.pending += left
        self._save_health(now)

    def _load_health(self) -> None:
        """Continue from the health kept in the database (another process, or before a restart)."""
        with self.session_factory() as session:
            for row in session.scalars(select(CdrTargetHealth).where(CdrTargetHealth.target.in_(self.health))):
                try:
                    state = TargetState(row.state)
                except ValueError:
                    log.error("CDR target %s: unknown stored state %r, taken as up", row.target, row.state)
                    state = TargetState.UP
                snapshot = HealthSnapshot(state, row.failing_since, row.failures, row.next_attempt_at, row.last_error)
                self.health[row.target].restore(snapshot)

    def _save_health(self, now: dt.datetime) -> None:
        """Keep every target's health (a handful of rows), so a restart neither re-alerts nor forgets."""
        with self.session_factory() as session, session.begin():
            rows = {r.target: r for r in session.scalars(select(CdrTargetHealth))}
            for name, health in self.health.items():
                snap = health.snapshot()
                row = rows.get(name) or CdrTargetHealth(target=name)
                row.state, row.failing_since, row.failures = snap.state.value, snap.failing_since, snap.failures
                row.next_attempt_at, row.last_error, row.updated_at = snap.next_attempt_at, snap.last_error, now
                session.add(row)

    def _record(self, session: Session, record: CdrFile, target: str, now: dt.datetime) -> None:
        session.add(CdrDelivery(file_id=record.id, target=target, delivered_at=now))
        try:
            session.commit()
        except IntegrityError:  # another process recorded it meanwhile: still exactly one row
            session.rollback()
        log.info("CDR file %s delivered to %s", record.name, target)

    def _alert(self, alerts: list[Alert], report: PushReport, now: dt.datetime) -> None:
        for alert in alerts:
            report.alerts.append(alert)
            subject, body = render_alert(alert, node=self.config.node.name)
            log.warning("%s", subject)
            with self.session_factory() as session, session.begin():
                session.add(EventLog(at=now, kind="cdr_alert", detail=f"{subject}\n{body}"))
            self._save_health(now)  # before the mail: a crash after it must not send it twice
            self.mailer.send(subject, body)

    @contextmanager
    def _serialised(self) -> Iterator[None]:
        self.spool.mkdir(parents=True, exist_ok=True)
        with self._lock, (self.spool / ".push.lock").open("a") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
