"""Persistence of conferences: runs, legs, recordings, CDRs, SMS sent on a conference's behalf, and crash
recovery. The one module of the conference package that talks to the database.

Rows (see ../shared/DESIGN.md and README "CDRs"): one ``ConferenceRun`` per conference; one ``Leg`` per call
attempt, created before the INVITE so its id is known (the machine's leg ids are these ids), closed and
turned into a CDR (:func:`bridge.cdr.writer.write_cdr`) when the leg reaches its terminal status; a
``Recording`` per recorded stretch. An answered inbound call that never got past the PIN prompt gets a run
of its own (service type ``dial-in``, result ``refused`` or ``abandoned``), one failed leg and its CDR
(:meth:`Records.unadmitted`): the provider sees every answered call.

Each method is one transaction in its own session; the service runs on the loop thread, except
:meth:`Records.stamp_alive`, which is safe from a worker thread. A CDR that fails to write is logged and the
leg is still closed: a failed record must not take the engine down. Wall-clock stamps (naive UTC) come from
the ``utc`` given to the constructor.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.writer import complete_run, write_cdr
from bridge.commands.handlers import ic_dial_list
from bridge.conference.policy import Launcher
from bridge.config import Config
from bridge.db.models import (
    ConferenceRun,
    Contact,
    EngineAlive,
    EventLog,
    InstantConference,
    Leg,
    Recording,
    Room,
    ServiceType,
    Subscriber,
    utcnow,
)
from bridge.smpp.queue import queue_mt

log = logging.getLogger(__name__)

CdrWriter = Callable[[Session, Leg], Any]

RESTART_CAUSE = "system restart"
RESTART_CAUSE_LAST_SEEN = "system restart (end time = last seen alive)"
"""The cause of a leg closed after a crash at the last instant its engine was known alive (the CDR's ``cause``
column: the CSV layout is unchanged; the text starts with the plain cause, for readers that match it)."""


@dataclass(frozen=True, kw_only=True)
class IcView:
    """An Instant Conference as a launch needs it."""

    id: int
    slot: int
    name: str
    subscriber: Launcher
    dial_list: tuple[str, ...]
    """Who to call, subscriber first (:func:`bridge.commands.handlers.ic_dial_list`); empty unless asked."""
    participant_sms: bool
    user_pin: str
    dnis_number: str


@dataclass(frozen=True, kw_only=True)
class RoomView:
    id: int
    name: str
    company_id: int | None
    max_members: int | None


@dataclass
class RunMeta:
    """What the service keeps of a running conference's row (the control API describes it)."""

    run_id: int
    service_type: str
    subject: str
    company_id: int | None
    subscriber_id: int | None
    ic_id: int | None
    room_id: int | None
    started_at: dt.datetime
    names: dict[str, str] = field(default_factory=dict)
    """Number -> name (the subscriber and their contacts) for the live view."""
    recording_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class NewLeg:
    direction: str
    role: str
    calling: str
    called: str
    status: str = "dialing"
    dnis: str = ""
    recorded: bool = False
    activation_pin_used: bool = False
    called_at: dt.datetime | None = None
    """None: now."""
    call_id: str = ""
    port_id: str = ""


@dataclass(frozen=True, kw_only=True)
class Unadmitted:
    """An answered call that ended in the PIN prompt. The run names an IC (and its company) only when a PIN
    named it -- an IC number is shared by every slot-x IC -- and a room when the number did."""

    calling: str
    called: str
    dnis: str
    arrived_at: dt.datetime
    refusal: str
    """Why the bridge ended it; empty: the caller hung up."""
    ic_id: int | None
    room_id: int | None
    call_id: str = ""
    port_id: str = ""
    packet_loss: float | None = None


class Records:
    """The conference service's database side; ``on_cdr(cdr_id)`` is told of every CDR written."""

    def __init__(
        self, config: Config, session_factory: sessionmaker[Session], *, write_cdr: CdrWriter | None = None,
        on_cdr: Callable[[int], None] = lambda cdr_id: None, utc: Callable[[], dt.datetime] = utcnow,
    ) -> None:  # fmt: skip
        self.config = config
        self.session_factory = session_factory
        self.write_cdr: CdrWriter = write_cdr or _write_cdr
        self.on_cdr = on_cdr
        self.utc = utc
        self.price_recovered: Callable[[Session, Leg], None] | None = None
        """Set by the billing glue: prices a leg :meth:`recover` closes (in its transaction, before its CDR)."""

    # --- reads ---------------------------------------------------------------------------------

    def launcher(self, subscriber_id: int) -> Launcher | None:
        with self._session() as session:
            subscriber = session.get(Subscriber, subscriber_id)
            return as_launcher(subscriber) if subscriber is not None else None

    def instant_conference(self, ic_id: int, *, dial_list: bool = False) -> IcView | None:
        """The IC, with its dial list when asked (which raises :class:`bridge.commands.errors.NestingError`
        when its groups nest too deep)."""
        with self._session() as session:
            ic = session.get(InstantConference, ic_id)
            if ic is None:
                return None
            return IcView(
                id=ic.id, slot=ic.slot, name=ic.name, subscriber=as_launcher(ic.subscriber),
                dial_list=ic_dial_list(ic) if dial_list else (),
                participant_sms=ic.participant_sms, user_pin=ic.user_pin,
                dnis_number=ic.dnis.number if ic.dnis is not None else "",
            )  # fmt: skip

    def room(self, room_id: int) -> RoomView | None:
        with self._session() as session:
            room = session.get(Room, room_id)
            if room is None:
                return None
            return RoomView(id=room.id, name=room.name, company_id=room.company_id, max_members=room.max_members)

    # --- runs and legs -------------------------------------------------------------------------

    def open_run(
        self, *, subscriber: Launcher | None, ic: IcView | None, room: RoomView | None, launched_by: str,
        legs: Sequence[NewLeg] = (), sms: Sequence[tuple[str, str]] = (),
    ) -> tuple[RunMeta, list[int]]:  # fmt: skip
        """Insert a run with its first ``legs`` and queue ``sms`` ``(destination, text)``: one transaction."""
        if room is not None:
            service_type, subject, company_id = ServiceType.ROOM, room.name, room.company_id
        else:
            service_type = ServiceType.IC
            subject = ic.name if ic is not None and ic.name else f"IC{ic.slot}" if ic is not None else "IC"
            company_id = subscriber.company_id if subscriber is not None else None
        with self._session() as session:
            run = ConferenceRun(
                service_type=service_type, subject=subject, company_id=company_id,
                subscriber_id=subscriber.subscriber_id if subscriber else None, ic_id=ic.id if ic else None,
                room_id=room.id if room else None, launched_by=launched_by, started_at=self.utc(),
            )  # fmt: skip
            session.add(run)
            session.flush()
            names: dict[str, str] = {}
            if subscriber is not None:
                names[subscriber.mobile] = subscriber.name
                query = select(Contact).where(Contact.subscriber_id == subscriber.subscriber_id)
                for contact in session.scalars(query):
                    names.setdefault(contact.phone, contact.nickname)
            leg_ids = self._add_legs(session, run.id, legs)
            for destination, text in sms:
                queue_mt(session, destination=destination, text=text, source=self.short_code())
            session.commit()
            meta = RunMeta(
                run.id, str(service_type), subject, company_id, run.subscriber_id, run.ic_id, run.room_id,
                run.started_at, names,
            )  # fmt: skip
        log.info("conference %s started (%s %r by %s)", meta.run_id, service_type, subject, launched_by)
        return meta, leg_ids

    def open_legs(self, run_id: int, legs: Sequence[NewLeg]) -> list[int]:
        with self._session() as session:
            leg_ids = self._add_legs(session, run_id, legs)
            session.commit()
        return leg_ids

    def leg_joined(
        self, leg_id: int, *, at: dt.datetime, codec: str, packet_loss: float | None, call_id: str, port_id: str
    ) -> None:
        with self._session() as session:
            leg = session.get(Leg, leg_id)
            if leg is not None:
                leg.status = "connected"
                leg.joined_at = at
                leg.codec = codec
                _copy_call(leg, call_id, port_id, packet_loss)
                session.commit()

    def leg_finished(
        self, leg_id: int, *, status: str, cause: str, packet_loss: float | None, call_id: str, port_id: str
    ) -> None:
        """Close the leg's row and write its CDR."""
        with self._session() as session:
            leg = session.get(Leg, leg_id)
            if leg is None:
                return
            leg.status = status
            leg.cause = cause
            leg.disconnected_at = self.utc()
            _copy_call(leg, call_id, port_id, packet_loss)
            cdr_id = self._cdr(session, leg)
            session.commit()
        if cdr_id is not None:
            self.on_cdr(cdr_id)

    def run_ended(self, run_id: int, reason: str) -> None:
        with self._session() as session:
            run = session.get(ConferenceRun, run_id)
            if run is not None:
                run.ended_at = self.utc()
                run.result = reason
                complete_run(session, run)
            session.commit()

    # --- recordings ----------------------------------------------------------------------------

    def recording_path(self, run_id: int) -> Path:
        folder = self.config.data_path / "recordings"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"run{run_id}_{self.utc():%Y%m%d%H%M%S}.wav"

    def recording_started(self, run_id: int, path: Path, leg_ids: Sequence[int]) -> int:
        """The run and the legs up now are marked recorded (the CDR's recording column); the recording's id."""
        with self._session() as session:
            recording = Recording(run_id=run_id, path=str(path), started_at=self.utc())
            session.add(recording)
            run = session.get(ConferenceRun, run_id)
            if run is not None:
                run.recorded = True
            for leg_id in leg_ids:
                leg = session.get(Leg, leg_id)
                if leg is not None:
                    leg.recorded = True
            session.commit()
            return recording.id

    def recording_stopped(self, recording_id: int) -> None:
        with self._session() as session:
            recording = session.get(Recording, recording_id)
            if recording is not None:
                recording.stopped_at = self.utc()
            session.commit()

    # --- SMS and events ------------------------------------------------------------------------

    def queue_sms(self, destinations: Sequence[str], text: str) -> None:
        with self._session() as session:
            for destination in destinations:
                queue_mt(session, destination=destination, text=text, source=self.short_code())
            session.commit()

    def tell_subscriber(self, subscriber_id: int, text: str) -> None:
        with self._session() as session:
            subscriber = session.get(Subscriber, subscriber_id)
            if subscriber is not None:
                queue_mt(session, destination=subscriber.mobile, text=text[:300], source=self.short_code())
                session.commit()

    def short_code(self) -> str:
        return self.config.smpp.short_codes[0] if self.config.smpp.short_codes else ""

    def event(self, kind: str, detail: str) -> None:
        with self._session() as session:
            session.add(EventLog(kind=kind, detail=detail))
            session.commit()

    def unadmitted(self, call: Unadmitted) -> None:
        """Run + failed leg + CDR for an answered call that ended in the PIN prompt (module docstring)."""
        now = self.utc()
        try:
            with self._session() as session:
                company_id = None
                if call.room_id is not None:
                    room = session.get(Room, call.room_id)
                    company_id = room.company_id if room is not None else None
                if call.ic_id is not None and company_id is None:
                    ic = session.get(InstantConference, call.ic_id)
                    company_id = ic.subscriber.company_id if ic is not None else None
                run = ConferenceRun(
                    service_type=ServiceType.DIAL_IN, subject=f"PIN prompt on {call.dnis}", company_id=company_id,
                    ic_id=call.ic_id, room_id=call.room_id, launched_by="dnis", started_at=call.arrived_at,
                    ended_at=now, result="refused" if call.refusal else "abandoned",
                )  # fmt: skip
                session.add(run)
                session.flush()
                leg = Leg(
                    run_id=run.id, direction="in", role="caller", calling=call.calling, called=call.called,
                    dnis=call.dnis, status="failed", cause=(call.refusal or "caller hung up at the PIN prompt")[:80],
                    called_at=call.arrived_at, disconnected_at=now,
                )  # fmt: skip
                _copy_call(leg, call.call_id, call.port_id, call.packet_loss)
                session.add(leg)
                session.flush()
                cdr_id = self._cdr(session, leg)
                session.commit()
        except Exception:  # the call is gone either way; a failed record must not take the engine down
            log.exception("recording the PIN-prompt call from %s failed", call.calling)
            return
        if cdr_id is not None:
            self.on_cdr(cdr_id)

    # --- crash safety --------------------------------------------------------------------------

    def recover(self) -> int:
        """Close legs and runs left open by a previous process (cause "system restart"), with CDRs.

        They end at the last instant that process was known alive (:meth:`stamp_alive`), not now: the
        downtime is not billed. A leg answered (or dialled) after that stamp ends at that event, so no
        duration is negative; the cause says the end time is the last known instant. Without any stamp
        (a database from before the stamps) they end now, as the plain "system restart".
        """
        count = 0
        with self._session() as session:
            now = self.utc()
            last_seen = session.scalar(select(func.max(EngineAlive.seen_at)))
            base = now if last_seen is None else min(last_seen, now)
            cause = RESTART_CAUSE if last_seen is None else RESTART_CAUSE_LAST_SEEN
            run_ends: dict[int, dt.datetime] = {}
            for leg in session.scalars(select(Leg).where(Leg.disconnected_at.is_(None))):
                leg.status = "left" if leg.joined_at is not None else "failed"
                leg.cause = cause
                leg.disconnected_at = max(t for t in (base, leg.called_at, leg.joined_at) if t is not None)
                run_ends[leg.run_id] = max(run_ends.get(leg.run_id, base), leg.disconnected_at)
                if self.price_recovered is not None and leg.joined_at is not None:
                    self.price_recovered(session, leg)
                self._cdr(session, leg)
                count += 1
            for run in session.scalars(select(ConferenceRun).where(ConferenceRun.ended_at.is_(None))):
                run.ended_at = max(run_ends.get(run.id, base), run.started_at)
                run.result = run.result or RESTART_CAUSE
                complete_run(session, run)
            if count:
                seen = "" if last_seen is None else f" (last seen alive {last_seen:%Y-%m-%d %H:%M:%S} UTC)"
                session.add(EventLog(kind="restart", detail=f"closed {count} legs left open{seen}"))
            session.commit()
        return count

    def stamp_alive(self, now: dt.datetime) -> None:
        """Record that this node's engine is alive at ``now`` (naive UTC): one UPDATE of one row, the first
        stamp inserts it. Safe from a worker thread (its own session, no other state)."""
        node = self.config.node.name
        with self._session() as session:
            result = session.execute(update(EngineAlive).where(EngineAlive.node == node).values(seen_at=now))
            if not getattr(result, "rowcount", 0):
                session.add(EngineAlive(node=node, seen_at=now))
            session.commit()

    # --- internals -----------------------------------------------------------------------------

    def _add_legs(self, session: Session, run_id: int, legs: Sequence[NewLeg]) -> list[int]:
        rows = []
        for spec in legs:
            row = Leg(
                run_id=run_id, direction=spec.direction, role=spec.role, calling=spec.calling, called=spec.called,
                dnis=spec.dnis, status=spec.status, called_at=spec.called_at or self.utc(), recorded=spec.recorded,
                activation_pin_used=spec.activation_pin_used,
            )  # fmt: skip
            _copy_call(row, spec.call_id, spec.port_id, None)
            session.add(row)
            rows.append(row)
        session.flush()
        return [row.id for row in rows]

    def _cdr(self, session: Session, leg: Leg) -> int | None:
        try:
            cdr = self.write_cdr(session, leg)
        except Exception:
            log.exception("CDR for leg %s failed", leg.id)
            return None
        cdr_id = getattr(cdr, "id", None)
        return int(cdr_id) if cdr_id is not None else None

    @contextmanager
    def _session(self) -> Iterator[Session]:
        session = self.session_factory()
        try:
            yield session
        except Exception:
            session.rollback()
            raise
        finally:
            session.close()


def _write_cdr(session: Session, leg: Leg) -> Any:
    return write_cdr(session, leg)


def as_launcher(subscriber: Subscriber) -> Launcher:
    """What launch decisions know about ``subscriber`` (also read by the billing glue)."""
    balance = subscriber.balance
    return Launcher(
        subscriber_id=subscriber.id, name=subscriber.name, mobile=subscriber.mobile, company_id=subscriber.company_id,
        status=subscriber.status.value, prepaid=bool(subscriber.prepaid),
        balance=Decimal(str(balance)) if balance is not None else None,
    )  # fmt: skip


def _copy_call(leg: Leg, call_id: str, port_id: str, packet_loss: float | None) -> None:
    if call_id:
        leg.call_id = call_id[:255]
    if port_id:
        leg.port_id = port_id[:20]
    if packet_loss is not None:
        leg.packet_loss = packet_loss
