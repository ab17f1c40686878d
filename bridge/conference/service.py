"""The conference service: glue between the pure machines and SIP, media, SMS and the database.

It owns every running :class:`~bridge.conference.machine.Conference` and every inbound call still in
the PIN IVR. All methods run on the engine's asyncio loop thread (the SIP service delivers its events
there; the control API calls in from the same loop), so no locking is needed. Time comes from the
``clock`` given to the constructor (``loop.time``) and wall-clock stamps for the database from
``utcnow``; :meth:`poll` runs the timers (dial pacing, hysteresis, callbacks, IVR timeouts, hang-ups
delayed until a prompt has been heard).

Database rows: one ``ConferenceRun`` per conference, one ``Leg`` per call attempt (created before the
INVITE so its id is known), closed and turned into a CDR (``bridge.cdr.writer.write_cdr``) when the
leg reaches its terminal status. An answered inbound call that never gets past the PIN prompt (wrong
PIN, conference full or locked, caller hung up) gets a run of its own, service type ``dial-in`` with result
``refused`` or ``abandoned``, one failed Leg and its CDR: the provider sees every answered call. The run names
an IC (and its company) only when a PIN named it, and a room when the number did. Calls
refused before answer (unknown number, throttled caller) get a SIP status and no CDR.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bridge.conference import ConferenceError, NotAllowed, UnknownLeg
from bridge.conference.machine import (
    PARTICIPANT,
    SUBSCRIBER,
    Action,
    Callback,
    Conference,
    Dial,
    DialPacer,
    Ended,
    Hangup,
    Join,
    LegFinished,
    LegStatus,
    Play,
    Policy,
    SetMuted,
    SetRecording,
    plan_launch,
)
from bridge.conference.ports import MediaPort, SipPort
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
    SmsDirection,
    SmsMessage,
    SmsStatus,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from bridge.dnis import ivr as ivr_module
from bridge.dnis.ivr import FailureThrottle, IvrSettings, PinIvr, Verdict
from bridge.dnis.routing import Decision, Route, RouteKind, RunningInfo, admit_without_pin, classify, resolve_pin

log = logging.getLogger(__name__)

CdrWriter = Callable[[Session, Leg], Any]
TIMER_RESOLUTION_S = 0.1
MAX_LINGER_S = 3.0


class UnknownConference(ConferenceError):
    """No running conference with that run id (control API: 404)."""


@dataclass
class LiveLeg:
    leg_id: int
    run_id: int
    number: str
    name: str
    role: str
    direction: str
    sip: Any = None
    pid: int | None = None
    talking: bool = False
    joined_at: dt.datetime | None = None
    on_hold: bool = False
    """The phone put the bridge on hold: its leg contributes nothing (no music-on-hold in the conference).
    The mixer mutes a leg that is on hold or muted by its conference (the machine's ``LegInfo.muted``)."""


@dataclass
class RunMeta:
    run_id: int
    service_type: str
    subject: str
    company_id: int | None
    subscriber_id: int | None
    ic_id: int | None
    room_id: int | None
    started_at: dt.datetime
    names: dict[str, str] = field(default_factory=dict)
    recording_id: int | None = None


@dataclass
class IvrCall:
    sip: Any
    route: Route
    ivr: PinIvr | None
    lobby: int
    arrived_at: dt.datetime
    pid: int | None = None
    decision: Decision | None = None
    answered: bool = False
    refusal: str = ""
    """Why the bridge ends the call ("wrong pin", "conference full"...); empty while it may still get in."""


@dataclass(frozen=True)
class _PendingDial:
    run_id: int
    leg_id: int
    number: str
    calling: str


RESTART_CAUSE = "system restart"
RESTART_CAUSE_LAST_SEEN = "system restart (end time = last seen alive)"
"""The cause of a leg closed after a crash at the last instant its engine was known alive (the CDR's ``cause``
column: the CSV layout is unchanged; the text starts with the plain cause, for readers that match it)."""


class ConferenceService:
    def __init__(
        self,
        config: Config,
        session_factory: sessionmaker[Session],
        *,
        sip: SipPort,
        media: MediaPort,
        clock: Callable[[], float],
        write_cdr: CdrWriter | None = None,
        on_cdr: Callable[[int], None] = lambda cdr_id: None,
        utc: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.config = config
        self.session_factory = session_factory
        self.sip = sip
        self.media = media
        self.clock = clock
        self.utc = utc
        self.write_cdr = write_cdr or _default_cdr_writer()
        self.on_cdr = on_cdr
        self.conferences: dict[int, Conference] = {}
        self.runs: dict[int, RunMeta] = {}
        self.legs: dict[int, LiveLeg] = {}
        self.ivr_calls: dict[str, IvrCall] = {}
        self._by_sip: dict[str, int] = {}
        self._later: list[tuple[float, Callable[[], None]]] = []
        rate = next((t.calls_per_second for t in config.trunk_group if t.role == "main"), 10.0)
        self.pacer: DialPacer[_PendingDial] = DialPacer(rate=rate, burst=max(1.0, rate))
        self.throttle = FailureThrottle(
            limit=config.dnis.throttle_failures, window_s=config.dnis.throttle_window_s,
            block_s=config.dnis.throttle_block_s,
        )  # fmt: skip
        self._lobby_ids = 0
        self._linger = 0.0
        self._last_play_s = 0.0
        self._lingering: dict[int, Any] = {}
        self._finished: dict[int, LiveLeg] = {}
        self._timers_at = 0.0
        self.media_version = 0
        """Bumped whenever a leg's media joins or leaves the mixer (the engine rebuilds its tick list)."""

    # --- queries (control API) -----------------------------------------------------------------

    def conference_ids(self) -> list[int]:
        return sorted(self.conferences)

    def describe(self, run_id: int) -> dict[str, Any]:
        conf = self._conf(run_id)
        meta = self.runs[run_id]
        legs = []
        for info in conf.legs.values():
            live = self.legs.get(info.leg_id) or self._finished.get(info.leg_id)
            legs.append(
                {
                    "leg_id": info.leg_id,
                    "number": info.number,
                    "name": live.name if live else "",
                    "role": info.role,
                    "direction": info.direction,
                    "status": str(info.status),
                    "cause": info.cause,
                    "muted": info.muted,
                    "on_hold": bool(live and live.on_hold),
                    "talking": bool(live and live.talking and info.status is LegStatus.CONNECTED),
                    "joined_at": _iso(live.joined_at) if live else None,
                }
            )
        return {
            "run_id": run_id,
            "service_type": meta.service_type,
            "subject": meta.subject,
            "company_id": meta.company_id,
            "subscriber_id": meta.subscriber_id,
            "ic_id": meta.ic_id,
            "room_id": meta.room_id,
            "started_at": _iso(meta.started_at),
            "recording": conf.recording,
            "locked": conf.locked,
            "state": conf.state.value,
            "legs": legs,
        }

    def status(self) -> dict[str, int]:
        return {
            "conferences": len(self.conferences),
            "participants": sum(len(c.connected()) for c in self.conferences.values()),
            "ivr_calls": len(self.ivr_calls),
        }

    def media_legs(self) -> Iterator[tuple[int, Any]]:
        """``(pid, rtp endpoint)`` of every leg whose media is in the mixer (conference or IVR lobby)."""
        for live in self.legs.values():
            if live.pid is not None and live.sip is not None and getattr(live.sip, "rtp", None) is not None:
                yield live.pid, live.sip.rtp
        for call in self.ivr_calls.values():
            if call.pid is not None and getattr(call.sip, "rtp", None) is not None:
                yield call.pid, call.sip.rtp
        for pid, sip_leg in self._lingering.items():
            if getattr(sip_leg, "rtp", None) is not None:
                yield pid, sip_leg.rtp

    def set_talking(self, pid: int, talking: bool) -> None:
        for live in self.legs.values():
            if live.pid == pid:
                live.talking = talking
                return

    # RunningConferences protocol (bridge.dnis.routing)
    def for_ic(self, ic_id: int) -> RunningInfo | None:
        return self._running(lambda meta: meta.ic_id == ic_id)

    def for_room(self, room_id: int) -> RunningInfo | None:
        return self._running(lambda meta: meta.room_id == room_id)

    def _running(self, match: Callable[[RunMeta], bool]) -> RunningInfo | None:
        for run_id, meta in self.runs.items():
            conf = self.conferences.get(run_id)
            if conf is not None and not conf.ended and match(meta):
                return RunningInfo(run_id, conf.subscriber_present, conf.locked, conf.full)
        return None

    # --- launching -----------------------------------------------------------------------------

    def launch(
        self, *, subscriber_id: int, numbers: Iterable[str], ic_id: int | None = None, launched_by: str = "sms"
    ) -> int:
        """Start a conference and dial the subscriber and ``numbers``; returns the run id."""
        with self._session() as session:
            subscriber = session.get(Subscriber, subscriber_id)
            if subscriber is None:
                raise UnknownConference(f"no subscriber {subscriber_id}")
            ic = session.get(InstantConference, ic_id) if ic_id is not None else None
            if ic_id is not None and (ic is None or ic.subscriber_id != subscriber_id):
                raise UnknownConference(f"no instant conference {ic_id} for subscriber {subscriber_id}")
            if ic is not None and self.for_ic(ic.id) is not None:
                raise NotAllowed(f"IC{ic.slot} is already running")  # the subscriber knows the slot, not the id
            _check_may_dial(subscriber)
            run, conf = self._new_run(session, subscriber=subscriber, ic=ic, room=None, launched_by=launched_by)
            plan = plan_launch(subscriber.mobile, list(numbers), max_participants=conf.policy.max_participants)
            actions: list[Action] = []
            for number, role in plan:
                actions += self._dial_leg(session, conf, number, role)
            if ic is not None and ic.participant_sms:
                self._participant_sms(session, ic, [n for n, role in plan if role != SUBSCRIBER])
            session.commit()
        self._apply(run.id, actions)
        return run.id

    def launch_ic(self, ic_id: int, *, launched_by: str = "portal") -> int:
        from bridge.commands.handlers import ic_dial_list

        with self._session() as session:
            ic = session.get(InstantConference, ic_id)
            if ic is None:
                raise UnknownConference(f"no instant conference {ic_id}")
            subscriber_id, numbers = ic.subscriber_id, ic_dial_list(ic)
        return self.launch(subscriber_id=subscriber_id, numbers=numbers, ic_id=ic_id, launched_by=launched_by)

    def on_actions(self, actions: Iterable[Any]) -> None:
        """Actions from the SMS command language (``bridge.commands.actions``)."""
        from bridge.commands.actions import LaunchConference, SmsBlast

        for action in actions:
            try:
                if isinstance(action, LaunchConference):
                    self.launch(
                        subscriber_id=action.subscriber_id, numbers=action.numbers, ic_id=action.ic_id,
                        launched_by="sms",
                    )  # fmt: skip
                elif isinstance(action, SmsBlast):
                    with self._session() as session:
                        for number in action.numbers:
                            queue_sms(session, destination=number, text=action.text, source=self._short_code())
                        session.commit()
            except ConferenceError as exc:
                log.warning("action %s refused: %s", action, exc)
                if isinstance(action, LaunchConference):
                    self._tell_subscriber(action.subscriber_id, f"Conference not started: {exc}")
            except Exception:  # the SMS was accepted: a failure here must not reach the SMPP service
                log.exception("action %s failed", action)

    # --- control API ---------------------------------------------------------------------------

    def end(self, run_id: int, reason: str = "ended by operator") -> None:
        self._apply(run_id, self._conf(run_id).end(reason, self.clock()))

    def set_recording(self, run_id: int, on: bool) -> None:
        self._apply(run_id, self._conf(run_id).set_recording(on))

    def set_locked(self, run_id: int, locked: bool) -> None:
        self._apply(run_id, self._conf(run_id).set_locked(locked))

    def set_muted(self, run_id: int, leg_id: int, muted: bool) -> None:
        self._apply(run_id, self._conf(run_id).set_muted(leg_id, muted))

    def kick(self, run_id: int, leg_id: int) -> None:
        self._apply(run_id, self._conf(run_id).kick(leg_id, self.clock()))

    def dial(self, run_id: int, number: str) -> int:
        from bridge.phone import PhoneError, to_e164

        conf = self._conf(run_id)
        try:
            number = to_e164(number, self.config.numbering.default_country)
        except PhoneError as exc:
            raise NotAllowed(f"bad number: {exc}") from exc
        with self._session() as session:
            actions = self._dial_leg(session, conf, number, PARTICIPANT)
            session.commit()
        self._apply(run_id, actions)
        dial = next(a for a in actions if isinstance(a, Dial))
        return dial.leg_id

    # --- SIP events ----------------------------------------------------------------------------

    def on_sip_event(self, event: Any) -> None:
        from bridge.sip import events as ev

        sip_leg = event.leg
        key = str(sip_leg.leg_id)
        try:
            if isinstance(event, ev.IncomingCall):
                self._incoming(sip_leg)
                return
            if key in self.ivr_calls:
                self._ivr_event(self.ivr_calls[key], event)
                return
            leg_id = self._by_sip.get(key)
            live = self.legs.get(leg_id) if leg_id is not None else None
            if live is None or live.run_id not in self.conferences:
                return
            conf = self.conferences[live.run_id]
            now = self.clock()
            if isinstance(event, ev.LegRinging):
                actions = conf.ringing(live.leg_id, now)
            elif isinstance(event, ev.LegAnswered):
                actions = conf.answered(live.leg_id, now)
            elif isinstance(event, ev.LegFailed):
                actions = conf.failed(live.leg_id, _cause(event.cause, event.status), now)
            elif isinstance(event, ev.LegEnded):
                actions = conf.ended_by_peer(live.leg_id, event.cause or "normal", now)
            elif isinstance(event, ev.LegDtmf):
                actions = conf.dtmf(live.leg_id, event.digit, now)
            elif isinstance(event, ev.LegHold):
                self._hold(live, event.on)
                return
            else:
                return
            self._apply(live.run_id, actions)
        except Exception:  # a bad event must never take the engine down
            log.exception("conference service: error handling %s", type(event).__name__)
            if isinstance(event, ev.IncomingCall):
                self.ivr_calls.pop(key, None)
                try:
                    self.sip.reject(sip_leg, 503, "Service Unavailable")
                except Exception:
                    log.exception("rejecting %s failed", key)

    # --- timers --------------------------------------------------------------------------------

    def poll(self, now: float) -> None:
        for item in self.pacer.release(now):
            self._send_dial(item)
        due = [item for item in self._later if item[0] <= now]
        if due:
            self._later = [item for item in self._later if item[0] > now]
            for _, fn in due:
                fn()
        # Conference and IVR timers have 100 ms resolution: checking them on every 20 ms media tick
        # would cost a walk over every leg 50 times a second for nothing.
        if now < self._timers_at:
            return
        self._timers_at = now + TIMER_RESOLUTION_S
        for run_id, conf in list(self.conferences.items()):
            deadline = conf.next_deadline()
            if deadline is not None and now >= deadline:
                self._apply(run_id, conf.poll(now))
        for call in list(self.ivr_calls.values()):
            if call.ivr is not None and call.ivr.deadline is not None and now >= call.ivr.deadline:
                self._ivr_actions(call, call.ivr.poll(now))

    # --- startup / shutdown --------------------------------------------------------------------

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
                self._cdr(session, leg)
                count += 1
            for run in session.scalars(select(ConferenceRun).where(ConferenceRun.ended_at.is_(None))):
                run.ended_at = max(run_ends.get(run.id, base), run.started_at)
                run.result = run.result or RESTART_CAUSE
                _complete_run(session, run)
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

    def end_all(self, reason: str) -> None:
        for run_id in list(self.conferences):
            self.end(run_id, reason)
        for key, call in list(self.ivr_calls.items()):
            self._drop_ivr(key, call, hangup=True)

    # --- internals: runs and legs --------------------------------------------------------------

    def _new_run(
        self, session: Session, *, subscriber: Subscriber | None, ic: InstantConference | None, room: Room | None,
        launched_by: str,
    ) -> tuple[ConferenceRun, Conference]:  # fmt: skip
        cfg = self.config.conference
        if room is not None:
            service_type, subject = ServiceType.ROOM, room.name
            company_id = room.company_id
        else:
            service_type = ServiceType.IC
            subject = ic.name if ic is not None and ic.name else f"IC{ic.slot}" if ic is not None else "IC"
            company_id = subscriber.company_id if subscriber is not None else None
        run = ConferenceRun(
            service_type=service_type, subject=subject, company_id=company_id,
            subscriber_id=subscriber.id if subscriber else None, ic_id=ic.id if ic else None,
            room_id=room.id if room else None, launched_by=launched_by, started_at=self.utc(),
        )  # fmt: skip
        session.add(run)
        session.flush()
        mobile = subscriber.mobile if subscriber is not None else ""
        max_participants = room.max_members if room is not None and room.max_members else cfg.max_participants
        policy = Policy(
            require_subscriber=room is None, subscriber_number=mobile, calling_number=mobile,
            hysteresis_s=cfg.hysteresis_s, callback_retries=cfg.callback_retries,
            callback_delay_s=cfg.callback_delay_s, max_participants=max_participants,
        )  # fmt: skip
        conf = Conference(run.id, policy, now=self.clock())
        names: dict[str, str] = {}
        if subscriber is not None:
            names[subscriber.mobile] = subscriber.name
            for contact in session.scalars(select(Contact).where(Contact.subscriber_id == subscriber.id)):
                names.setdefault(contact.phone, contact.nickname)
        self.conferences[run.id] = conf
        self.runs[run.id] = RunMeta(
            run.id, str(service_type), subject, company_id, run.subscriber_id, run.ic_id, run.room_id,
            run.started_at, names,
        )  # fmt: skip
        log.info("conference %s started (%s %r by %s)", run.id, service_type, subject, launched_by)
        return run, conf

    def _dial_leg(
        self, session: Session, conf: Conference, number: str, role: str, *, callback: bool = False
    ) -> list[Action]:
        if conf.full:
            raise NotAllowed(f"conference {conf.run_id} is full")
        leg = Leg(
            run_id=conf.run_id, direction="out", role=role, calling=conf.policy.calling_number, called=number,
            status="dialing", called_at=self.utc(), recorded=conf.recording,
        )  # fmt: skip
        session.add(leg)
        session.flush()
        meta = self.runs[conf.run_id]
        self.legs[leg.id] = LiveLeg(leg.id, conf.run_id, number, meta.names.get(number, ""), role, "out")
        return conf.dial(leg.id, number, role, self.clock(), callback=callback)

    def _apply(self, run_id: int, actions: list[Action]) -> None:
        conf = self.conferences.get(run_id)
        # A conference that ends with a prompt to everyone ("goodbye" after **) keeps its legs' media
        # and calls up until the prompt has been heard; the rows and CDRs are closed at once.
        ending_with_prompt = any(isinstance(a, Ended) for a in actions) and any(
            isinstance(a, Play) and a.leg_id is None for a in actions
        )
        self._linger = 0.0
        for action in actions:
            try:
                self._apply_one(run_id, conf, action)
                if ending_with_prompt and isinstance(action, Play) and action.leg_id is None:
                    self._linger = min(self._last_play_s, MAX_LINGER_S)
            except Exception:
                log.exception("conference %s: failed to carry out %s", run_id, action)
        self._linger = 0.0

    def _apply_one(self, run_id: int, conf: Conference | None, action: Action) -> None:
        if isinstance(action, Dial):
            # Sent from the next poll (the next media tick): a launch returns at once with its legs
            # "dialing", and a burst of dials is paced per trunk group.
            self.pacer.submit(_PendingDial(run_id, action.leg_id, action.number, action.calling))
        elif isinstance(action, Hangup):
            self.pacer.discard(lambda item: item.leg_id == action.leg_id)
            live = self.legs.get(action.leg_id)
            if live is not None and live.sip is not None:
                if self._linger > 0:
                    sip_leg, cause = live.sip, action.cause
                    self._later.append((self.clock() + self._linger, lambda: self.sip.hangup(sip_leg, cause)))
                else:
                    self.sip.hangup(live.sip, action.cause)
        elif isinstance(action, Join):
            self._join(action.leg_id, action.muted, run_id)
        elif isinstance(action, LegFinished):
            self._leg_finished(action)
        elif isinstance(action, Play):
            live = self.legs.get(action.leg_id) if action.leg_id is not None else None
            self._last_play_s = 0.0
            if action.leg_id is None:
                self._last_play_s = self.media.play(action.prompts, conference=run_id)
            elif live is not None and live.pid is not None:
                self._last_play_s = self.media.play(action.prompts, pid=live.pid)
        elif isinstance(action, SetMuted):
            live = self.legs.get(action.leg_id)
            if live is not None and live.pid is not None:
                self.media.set_muted(live.pid, action.muted or live.on_hold)
        elif isinstance(action, SetRecording):
            self._recording(run_id, action.on)
        elif isinstance(action, Callback) and conf is not None and not conf.ended:
            with self._session() as session:
                actions = self._dial_leg(session, conf, action.number, SUBSCRIBER, callback=True)
                session.commit()
            self._apply(run_id, actions)
        elif isinstance(action, Ended):
            self._ended(run_id, action.reason)

    def _send_dial(self, item: _PendingDial) -> None:
        live = self.legs.get(item.leg_id)
        conf = self.conferences.get(item.run_id)
        if live is None or conf is None or conf.ended:
            return
        try:
            sip_leg = self.sip.dial(called=item.number, calling=item.calling, display_name="")
        except Exception as exc:
            log.warning("dial %s failed: %s", item.number, exc)
            self._apply(item.run_id, conf.failed(item.leg_id, f"dial error: {exc}", self.clock()))
            return
        live.sip = sip_leg
        self._by_sip[str(sip_leg.leg_id)] = item.leg_id

    def _join(self, leg_id: int, muted: bool, run_id: int) -> None:
        live = self.legs.get(leg_id)
        if live is None:
            return
        live.joined_at = self.utc()
        codec = _codec(live.sip)
        live.pid = self.media.add(run_id, codec=codec, muted=muted or live.on_hold)
        self.media_version += 1
        with self._session() as session:
            leg = session.get(Leg, leg_id)
            if leg is not None:
                leg.status = "connected"
                leg.joined_at = live.joined_at
                leg.codec = codec
                _copy_sip(leg, live.sip)
                session.commit()

    def _hold(self, live: LiveLeg, on: bool) -> None:
        """The phone held (re-INVITE sendonly/inactive) or resumed the call: while held, the leg is muted in
        the mixer so the phone's music-on-hold never plays into the conference; on resume, the conference's
        own mute state applies again. (Sending to a held phone stops in the RTP layer.)"""
        live.on_hold = on
        info = self.conferences[live.run_id].legs.get(live.leg_id)  # on_sip_event checked the conference
        if live.pid is not None:
            self.media.set_muted(live.pid, on or bool(info and info.muted))
        log.info("leg %s %s", live.leg_id, "on hold" if on else "resumed")

    def _leg_finished(self, action: LegFinished) -> None:
        live = self.legs.pop(action.leg_id, None)
        if live is None:
            return
        self._finished[action.leg_id] = live  # name and join time stay visible until the run ends
        if live.sip is not None:
            self._by_sip.pop(str(live.sip.leg_id), None)
        if live.pid is not None:
            if self._linger > 0 and live.sip is not None:
                self._keep_media(live.pid, live.sip, self._linger)
            else:
                self.media.remove(live.pid)
                self.media_version += 1
        with self._session() as session:
            leg = session.get(Leg, action.leg_id)
            if leg is None:
                return
            leg.status = str(action.status)
            leg.cause = action.cause
            leg.disconnected_at = self.utc()
            _copy_sip(leg, live.sip)
            cdr_id = self._cdr(session, leg)
            session.commit()
        if cdr_id is not None:
            self.on_cdr(cdr_id)

    def _keep_media(self, pid: int, sip_leg: Any, seconds: float) -> None:
        """Keep a finished leg's media in the mixer for ``seconds`` (so it hears the last prompt)."""
        self._lingering[pid] = sip_leg

        def release() -> None:
            if self._lingering.pop(pid, None) is not None:
                self.media.remove(pid)
                self.media_version += 1

        self._later.append((self.clock() + seconds, release))

    def _recording(self, run_id: int, on: bool) -> None:
        meta = self.runs.get(run_id)
        if meta is None:
            return
        with self._session() as session:
            run = session.get(ConferenceRun, run_id)
            if on:
                folder = self.config.data_path / "recordings"
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"run{run_id}_{self.utc():%Y%m%d%H%M%S}.wav"
                self.media.start_recording(run_id, str(path))
                recording = Recording(run_id=run_id, path=str(path), started_at=self.utc())
                session.add(recording)
                if run is not None:
                    run.recorded = True
                conf = self.conferences.get(run_id)
                for info in conf.live_legs() if conf is not None else []:
                    leg = session.get(Leg, info.leg_id)
                    if leg is not None:
                        leg.recorded = True
                session.flush()
                meta.recording_id = recording.id
            else:
                self.media.stop_recording(run_id)
                if meta.recording_id is not None:
                    recording_row = session.get(Recording, meta.recording_id)
                    if recording_row is not None:
                        recording_row.stopped_at = self.utc()
                    meta.recording_id = None
            session.commit()

    def _ended(self, run_id: int, reason: str) -> None:
        self.conferences.pop(run_id, None)
        self.runs.pop(run_id, None)
        for leg_id in [k for k, v in self._finished.items() if v.run_id == run_id]:
            del self._finished[leg_id]
        self.pacer.discard(lambda item: item.run_id == run_id)
        with self._session() as session:
            run = session.get(ConferenceRun, run_id)
            if run is not None:
                run.ended_at = self.utc()
                run.result = reason
                _complete_run(session, run)
            session.commit()
        log.info("conference %s ended: %s", run_id, reason)

    # --- internals: dial-in --------------------------------------------------------------------

    def _incoming(self, sip_leg: Any) -> None:
        now = self.clock()
        calling = self._normalise(str(getattr(sip_leg, "calling", "")))
        sip_leg.calling = calling
        if calling and self.throttle.blocked(calling, now):
            self.sip.reject(sip_leg, 403, "Too many failed PIN attempts")
            return
        with self._session() as session:
            route = classify(session, self.config, str(sip_leg.called))
        if route is None:
            self.sip.reject(sip_leg, 404, "Not Found")
            return
        self._lobby_ids += 1
        settings = IvrSettings(
            attempts=self.config.conference.pin_attempts,
            digit_timeout_s=self.config.dnis.digit_timeout_s,
            first_digit_timeout_s=self.config.dnis.first_digit_timeout_s,
            submit_length=None if route.kind is RouteKind.ROOM else self.config.conference.pin_digits,
        )
        ivr = PinIvr(settings, name=str(sip_leg.leg_id)) if route.needs_pin else None
        self.ivr_calls[str(sip_leg.leg_id)] = IvrCall(
            sip_leg, route, ivr, lobby=-self._lobby_ids, arrived_at=self.utc()
        )
        self.sip.answer(sip_leg)

    def _ivr_event(self, call: IvrCall, event: Any) -> None:
        from bridge.sip import events as ev

        key = str(call.sip.leg_id)
        now = self.clock()
        if isinstance(event, ev.LegAnswered):
            call.answered = True
            call.pid = self.media.add(call.lobby, codec=_codec(call.sip))
            self.media_version += 1
            if call.ivr is not None:
                self._ivr_actions(call, call.ivr.start(now))
            else:
                with self._session() as session:
                    decision = admit_without_pin(session, call.route, self)
                self._decide(call, decision)
        elif isinstance(event, ev.LegDtmf):
            if call.ivr is not None:
                self._ivr_actions(call, call.ivr.digit(event.digit, now))
        elif isinstance(event, ev.LegEnded | ev.LegFailed):
            if call.ivr is not None:
                call.ivr.hangup()
            self._drop_ivr(key, call, hangup=False)

    def _ivr_actions(self, call: IvrCall, actions: list[ivr_module.IvrAction]) -> None:
        delay = 0.0
        for action in actions:
            if isinstance(action, ivr_module.Play) and call.pid is not None:
                delay = self.media.play((action.prompt,), pid=call.pid)
            elif isinstance(action, ivr_module.CheckPin):
                with self._session() as session:
                    decision = resolve_pin(session, call.route, action.pin, calling=str(call.sip.calling), running=self)
                call.decision = decision
                assert call.ivr is not None
                self._ivr_actions(call, call.ivr.verdict(decision.verdict, self.clock()))
            elif isinstance(action, ivr_module.Admit) and call.decision is not None:
                self._admit(call, call.decision)
            elif isinstance(action, ivr_module.Disconnect):
                call.refusal = action.cause
                if action.wrong_pin:
                    self.throttle.record_failure(str(call.sip.calling), self.clock())
                with self._session() as session:
                    session.add(
                        EventLog(
                            kind="dial_in_refused", detail=f"{call.sip.calling} -> {call.sip.called}: {action.cause}"
                        )
                    )
                    session.commit()
                self._hangup_after(call, delay)

    def _decide(self, call: IvrCall, decision: Decision) -> None:
        """A PIN-less room: admit or refuse at once."""
        if decision.verdict is Verdict.ACCEPT:
            self._admit(call, decision)
            return
        prompt = {Verdict.FULL: "conference_full", Verdict.LOCKED: "conference_locked"}.get(decision.verdict, "goodbye")
        call.decision = decision
        call.refusal = {Verdict.FULL: "conference full", Verdict.LOCKED: "conference locked"}.get(
            decision.verdict, "refused"
        )
        delay = self.media.play((prompt,), pid=call.pid) if call.pid is not None else 0.0
        self._hangup_after(call, delay)

    def _hangup_after(self, call: IvrCall, delay: float) -> None:
        key = str(call.sip.leg_id)

        def hangup() -> None:
            current = self.ivr_calls.get(key)
            if current is not None:
                self._drop_ivr(key, current, hangup=True)

        self._later.append((self.clock() + delay + 0.3, hangup))

    def _drop_ivr(self, key: str, call: IvrCall, *, hangup: bool) -> None:
        """The call leaves the PIN prompt without joining: release it and record it."""
        if self.ivr_calls.pop(key, None) is None:
            return  # already dropped (the caller hung up while a refusal prompt played)
        if call.pid is not None:
            self.media.remove(call.pid)
            call.pid = None
            self.media_version += 1
        if hangup:
            self.sip.hangup(call.sip, "normal")
        if call.answered:
            self._record_unadmitted(call)

    def _record_unadmitted(self, call: IvrCall) -> None:
        """Run + failed Leg + CDR for an answered call that ended in the PIN prompt (see the module docstring)."""
        now = self.utc()
        cause = call.refusal or "caller hung up at the PIN prompt"
        decision = call.decision  # names the IC only when a PIN did: an IC number is shared by every slot-x IC
        room_id = decision.room_id if decision is not None and decision.room_id is not None else call.route.room_id
        ic_id = decision.ic_id if decision is not None else None
        try:
            with self._session() as session:
                company_id = None
                if room_id is not None:
                    room = session.get(Room, room_id)
                    company_id = room.company_id if room is not None else None
                if ic_id is not None and company_id is None:
                    ic = session.get(InstantConference, ic_id)
                    company_id = ic.subscriber.company_id if ic is not None else None
                run = ConferenceRun(
                    service_type=ServiceType.DIAL_IN, subject=f"PIN prompt on {call.route.number}",
                    company_id=company_id, ic_id=ic_id, room_id=room_id, launched_by="dnis",
                    started_at=call.arrived_at, ended_at=now, result="refused" if call.refusal else "abandoned",
                )  # fmt: skip
                session.add(run)
                session.flush()
                leg = Leg(
                    run_id=run.id, direction="in", role="caller", calling=str(call.sip.calling),
                    called=str(call.sip.called), dnis=call.route.number, status="failed", cause=cause[:80],
                    called_at=call.arrived_at, disconnected_at=now,
                )  # fmt: skip
                _copy_sip(leg, call.sip)
                session.add(leg)
                session.flush()
                cdr_id = self._cdr(session, leg)
                session.commit()
        except Exception:  # the call is gone either way; a failed record must not take the engine down
            log.exception("recording the PIN-prompt call %s failed", call.sip.leg_id)
            return
        if cdr_id is not None:
            self.on_cdr(cdr_id)

    def _admit(self, call: IvrCall, decision: Decision) -> None:
        key = str(call.sip.leg_id)
        sip_leg = call.sip
        launch_numbers: tuple[str, ...] = ()
        if not decision.launch and (decision.run_id is None or decision.run_id not in self.conferences):
            call.refusal = "conference ended"
            self._drop_ivr(key, call, hangup=True)
            return
        with self._session() as session:
            if decision.launch:
                ic = session.get(InstantConference, decision.ic_id) if decision.ic_id is not None else None
                room = session.get(Room, decision.room_id) if decision.room_id is not None else None
                if ic is not None:
                    from bridge.commands.handlers import ic_dial_list

                    try:
                        _check_may_dial(ic.subscriber)
                    except NotAllowed as exc:
                        log.info("speed dial of IC %s refused: %s", ic.id, exc)
                        call.refusal = f"launch refused: {exc}"
                        delay = self.media.play(("goodbye",), pid=call.pid) if call.pid is not None else 0.0
                        self._hangup_after(call, delay)
                        return
                    launch_numbers = tuple(n for n in ic_dial_list(ic) if n != ic.subscriber.mobile)
                run, conf = self._new_run(
                    session, subscriber=ic.subscriber if ic is not None else None, ic=ic, room=room,
                    launched_by="dnis",
                )  # fmt: skip
                run_id = run.id
            else:
                assert decision.run_id is not None  # checked above
                run_id = decision.run_id
                conf = self.conferences[run_id]
            leg = Leg(
                run_id=run_id, direction="in", role=decision.role, calling=str(sip_leg.calling),
                called=str(sip_leg.called), dnis=call.route.number, status="connected", called_at=call.arrived_at,
                activation_pin_used=decision.activation_pin_used, recorded=conf.recording,
            )  # fmt: skip
            _copy_sip(leg, sip_leg)
            session.add(leg)
            session.flush()
            meta = self.runs[run_id]
            number = str(sip_leg.calling)
            self.legs[leg.id] = LiveLeg(
                leg.id, run_id, number, meta.names.get(number, ""), decision.role, "in", sip=sip_leg
            )
            self._by_sip[key] = leg.id
            # The caller leaves the IVR lobby; their media moves into the conference on Join.
            self.ivr_calls.pop(key, None)
            if call.pid is not None:
                self.media.remove(call.pid)
                self.media_version += 1
            actions = conf.join_inbound(leg.id, number, decision.role, self.clock())
            if decision.launch:
                plan = plan_launch("", launch_numbers, max_participants=conf.policy.max_participants - 1)
                for member, role in plan:
                    actions += self._dial_leg(session, conf, member, role)
            session.commit()
        self._apply(run_id, actions)

    # --- helpers -------------------------------------------------------------------------------

    def _participant_sms(self, session: Session, ic: InstantConference, numbers: list[str]) -> None:
        dial_back = self.config.dnis.common or (ic.dnis.number if ic.dnis is not None else "")
        text = f"{ic.subscriber.name} invites you to a conference. To join again call {dial_back} PIN {ic.user_pin}"
        for number in numbers:
            queue_sms(session, destination=number, text=text, source=self._short_code())

    def _normalise(self, number: str) -> str:
        """A caller's number in E.164 when it reads as one (CLI compared with subscribers' mobiles)."""
        from bridge.phone import PhoneError, to_e164

        try:
            return to_e164(number, self.config.numbering.default_country)
        except PhoneError:
            return number

    def _tell_subscriber(self, subscriber_id: int, text: str) -> None:
        with self._session() as session:
            subscriber = session.get(Subscriber, subscriber_id)
            if subscriber is not None:
                queue_sms(session, destination=subscriber.mobile, text=text[:300], source=self._short_code())
                session.commit()

    def _short_code(self) -> str:
        return self.config.smpp.short_codes[0] if self.config.smpp.short_codes else ""

    def _cdr(self, session: Session, leg: Leg) -> int | None:
        try:
            cdr = self.write_cdr(session, leg)
        except Exception:
            log.exception("CDR for leg %s failed", leg.id)
            return None
        cdr_id = getattr(cdr, "id", None)
        return int(cdr_id) if cdr_id is not None else None

    def _conf(self, run_id: int) -> Conference:
        conf = self.conferences.get(run_id)
        if conf is None:
            raise UnknownConference(f"no running conference {run_id}")
        return conf

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


# --- adapters to other areas (kept here so a missing or renamed API fails in one place) --------------


def _check_may_dial(subscriber: Subscriber) -> None:
    """Outbound calls carry the subscriber's number and are billed to them: only an active subscriber,
    and a prepaid one only with a positive balance (rating itself is the billing area's)."""
    if subscriber.status is not SubscriberStatus.ACTIVE:
        raise NotAllowed(f"subscriber {subscriber.id} is {subscriber.status.value}")
    if subscriber.prepaid and (subscriber.balance is None or subscriber.balance <= 0):
        raise NotAllowed("no prepaid balance left")


def _default_cdr_writer() -> CdrWriter:
    try:
        from bridge.cdr.writer import write_cdr
    except ImportError:  # pragma: no cover - the CDR package is part of the appliance
        log.error("bridge.cdr.writer.write_cdr is missing: legs are closed without CDRs")
        return lambda session, leg: None
    return write_cdr


def _complete_run(session: Session, run: ConferenceRun) -> None:
    try:
        from bridge.cdr.writer import complete_run
    except ImportError:  # pragma: no cover
        return
    complete_run(session, run)


def queue_sms(session: Session, *, destination: str, text: str, source: str) -> None:
    """Queue an MT via ``bridge.smpp.queue.queue_mt`` (CONTRACTS §2), or insert the same row if absent."""
    try:
        from bridge.smpp.queue import queue_mt
    except ImportError:
        session.add(
            SmsMessage(
                direction=SmsDirection.MT, source=source, destination=destination, text=text, status=SmsStatus.QUEUED
            )
        )
        session.flush()
        return
    queue_mt(session, destination=destination, text=text, source=source)


def _codec(sip_leg: Any) -> str:
    rtp = getattr(sip_leg, "rtp", None)
    codec: Any = None
    stats = getattr(rtp, "stats", None)
    if callable(stats):
        try:
            codec = stats().get("codec")
        except Exception:  # stats are best effort
            codec = None
    return codec if isinstance(codec, str) and codec in ("PCMU", "PCMA") else "PCMU"


def _copy_sip(leg: Leg, sip_leg: Any) -> None:
    if sip_leg is None:
        return
    leg.call_id = str(getattr(sip_leg, "call_id", "") or "")[:255]
    leg.port_id = str(getattr(sip_leg, "port_id", "") or "")[:20]
    rtp = getattr(sip_leg, "rtp", None)
    stats = getattr(rtp, "stats", None)
    if callable(stats):
        try:
            loss = stats().get("loss_fraction")
            if isinstance(loss, int | float):
                leg.packet_loss = float(loss)
        except Exception:  # stats are best effort
            pass


def _cause(cause: str, status: int) -> str:
    if cause:
        return cause
    return f"SIP {status}" if status else "no response"


def _iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat() if value is not None else None


__all__ = ["ConferenceService", "NotAllowed", "UnknownConference", "UnknownLeg", "queue_sms"]
