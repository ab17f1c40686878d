"""The conference service: glue between the pure machines and SIP, media, SMS and the database.

It owns every running :class:`~bridge.conference.machine.Conference` and carries out the actions the
machines return; it decides nothing itself. Around it (../shared/DESIGN.md "Data flow"):

* :mod:`bridge.conference.policy` decides who may launch and whom to dial (the seam for :mod:`bridge.billing`);
* :mod:`bridge.conference.records` writes runs, legs, recordings and CDRs;
* :class:`bridge.dnis.lobby.Lobby` holds inbound calls in the PIN prompt and hands the admitted ones back
  through :meth:`ConferenceService.admit` (this service is its :class:`~bridge.dnis.lobby.LobbyHost`);
* the SIP side is a :class:`~bridge.conference.interfaces.SipPort` and media a
  :class:`~bridge.conference.interfaces.MediaPort` (:class:`bridge.conference.media.MixerMedia`, which owns
  every leg's endpoint once it is attached: this service only passes the endpoint the SIP side hands over).

All methods run on the engine's asyncio loop thread (the SIP service delivers its events there; the control
API calls in from the same loop), so no locking is needed. Time comes from the ``clock`` given to the
constructor (``loop.time``); :meth:`poll` runs the timers (dial pacing, hysteresis, callbacks, IVR timeouts,
hang-ups that wait for a prompt).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bridge.billing.policy import Refusal as BillingRefusal
from bridge.commands.actions import LaunchConference, SmsBlast
from bridge.conference import ConferenceError, NotAllowed, UnknownLeg
from bridge.conference.billing import BillingGlue
from bridge.conference.interfaces import MediaPort, SipPort
from bridge.conference.machine import (
    PARTICIPANT,
    PROMPT_WAIT_MAX_S,
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
    Play,
    Policy,
    SetMuted,
    SetRecording,
)
from bridge.conference.policy import Launcher, conference_policy, launch_plan, may_launch, speed_dial_plan
from bridge.conference.records import CdrWriter, IcView, NewLeg, Records, RoomView, RunMeta
from bridge.conference.snapshot import describe_run
from bridge.config import Config
from bridge.db.models import utcnow
from bridge.dnis.lobby import Lobby, LobbyCall, Refused
from bridge.dnis.routing import Decision, RunningInfo
from bridge.phone import PhoneError, to_e164
from bridge.sip.events import IncomingCall, LegAnswered, LegDtmf, LegEnded, LegEvent, LegFailed, LegHold, LegRinging
from bridge.sip.leg import SipLeg

log = logging.getLogger(__name__)

TIMER_RESOLUTION_S = 0.1


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
    sip: SipLeg | None = None
    pid: int | None = None
    talking: bool = False
    joined_at: dt.datetime | None = None
    on_hold: bool = False
    """The phone put the bridge on hold: its leg contributes nothing (no music-on-hold in the conference).
    The mixer mutes a leg that is on hold or muted by its conference (the machine's ``LegInfo.muted``)."""
    lingering: bool = False
    """Hung up after a prompt (``Hangup.after_prompt``): its call and media are released by a timer."""


@dataclass(frozen=True)
class _PendingDial:
    run_id: int
    leg_id: int
    number: str
    calling: str


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
        self.sip = sip
        self.media = media
        self.clock = clock
        self.utc = utc
        self.records = Records(config, session_factory, write_cdr=write_cdr, on_cdr=on_cdr, utc=utc)
        self.billing = BillingGlue(config, session_factory, self.records, utc)
        self.lobby = Lobby(
            config, session_factory, sip=sip, media=media, records=self.records, host=self, clock=clock, utc=utc
        )
        self.conferences: dict[int, Conference] = {}
        self.runs: dict[int, RunMeta] = {}
        self.legs: dict[int, LiveLeg] = {}
        self._by_sip: dict[str, int] = {}
        self._by_pid: dict[int, LiveLeg] = {}
        self._finished: dict[int, LiveLeg] = {}
        self._later: list[tuple[float, Callable[[], None]]] = []
        self._prompt_ends: dict[int, float] = {}
        main_rate = next((t.calls_per_second for t in config.trunk_group if t.role == "main"), 10.0)
        self.pacer: DialPacer[_PendingDial] = DialPacer(
            {t.name: t.calls_per_second for t in config.trunk_group}, default_rate=main_rate
        )
        self._timers_at = 0.0

    # --- queries (control API) -----------------------------------------------------------------

    def conference_ids(self) -> list[int]:
        return sorted(self.conferences)

    def describe(self, run_id: int) -> dict[str, Any]:
        live_of = lambda leg_id: self.legs.get(leg_id) or self._finished.get(leg_id)  # noqa: E731
        return describe_run(self._conf(run_id), self.runs[run_id], live_of, self.billing.active(self.clock()))

    def status(self) -> dict[str, int]:
        return {
            "conferences": len(self.conferences),
            "participants": sum(len(c.connected()) for c in self.conferences.values()),
            "ivr_calls": len(self.lobby),
        }

    def set_talking(self, pid: int, talking: bool) -> None:
        """The media owner's one talker callback (``MixerMedia.on_talking``)."""
        live = self._by_pid.get(pid)
        if live is not None:
            live.talking = talking

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
        launcher = self.records.launcher(subscriber_id)
        if launcher is None:
            raise UnknownConference(f"no subscriber {subscriber_id}")
        ic = self.records.instant_conference(ic_id) if ic_id is not None else None
        if ic_id is not None and (ic is None or ic.subscriber.subscriber_id != subscriber_id):
            raise UnknownConference(f"no instant conference {ic_id} for subscriber {subscriber_id}")
        running = ic is not None and self.for_ic(ic.id) is not None
        policy = conference_policy(self.config.conference, subscriber_number=launcher.mobile, room=False)
        plan = launch_plan(launcher.mobile, list(numbers), max_participants=policy.max_participants)
        billed = self.billing.launch_check(launcher, [n for n, _ in plan], self.clock())
        refusal = may_launch(launcher, ic_slot=ic.slot if ic is not None else None, ic_running=running, billed=billed)
        if refusal is not None:
            raise NotAllowed(refusal.text)
        sms: list[tuple[str, str]] = []
        if ic is not None and ic.participant_sms:
            text = self._invitation(ic)
            sms = [(number, text) for number, role in plan if role != SUBSCRIBER]
        run_id, _, actions = self._open(
            launcher=launcher, ic=ic, room=None, launched_by=launched_by, policy=policy, dials=plan, sms=sms
        )
        self._apply(run_id, actions)
        return run_id

    def launch_ic(self, ic_id: int, *, launched_by: str = "portal") -> int:
        ic = self.records.instant_conference(ic_id, dial_list=True)
        if ic is None:
            raise UnknownConference(f"no instant conference {ic_id}")
        return self.launch(
            subscriber_id=ic.subscriber.subscriber_id, numbers=ic.dial_list, ic_id=ic_id, launched_by=launched_by
        )

    def on_actions(self, actions: Iterable[Any]) -> None:
        """Actions from the SMS command language (``bridge.commands.actions``)."""
        for action in actions:
            try:
                if isinstance(action, LaunchConference):
                    self.launch(
                        subscriber_id=action.subscriber_id, numbers=action.numbers, ic_id=action.ic_id,
                        launched_by="sms",
                    )  # fmt: skip
                elif isinstance(action, SmsBlast):
                    self.records.queue_sms(action.numbers, action.text)
            except ConferenceError as exc:
                log.warning("action %s refused: %s", action, exc)
                if isinstance(action, LaunchConference):
                    self.records.tell_subscriber(action.subscriber_id, f"Conference not started: {exc}")
            except Exception:  # the SMS was accepted: a failure here must not reach the SMPP service
                log.exception("action %s failed", action)

    # --- the lobby's host (bridge.dnis.lobby.LobbyHost) ----------------------------------------

    def admit(self, call: LobbyCall, decision: Decision) -> Refused | None:
        """A caller passed the PIN prompt: join them (launching the conference when ``decision`` says so)."""
        sip_leg = call.sip
        inbound = NewLeg(
            direction="in", role=decision.role, calling=sip_leg.calling, called=sip_leg.called,
            dnis=call.route.number, status="connected", called_at=call.arrived_at,
            activation_pin_used=decision.activation_pin_used, call_id=sip_leg.call_id, port_id=sip_leg.port_id,
        )  # fmt: skip
        if not decision.launch:
            conf = self.conferences.get(decision.run_id) if decision.run_id is not None else None
            if conf is None:
                return Refused("conference ended", prompt=None)
            if conf.full:  # a returning subscriber is not checked by routing; the machine's cap holds for all
                return Refused("conference full", prompt="conference_full")
            meta = self.runs[conf.run_id]
            grant = self.billing.before_dial_in(meta.company_id, meta.subscriber_id, call.route.number)
            if isinstance(grant, BillingRefusal):
                return Refused(grant.cause)
            inbound = dataclasses.replace(inbound, recorded=conf.recording)
            (leg_id,) = self.records.open_legs(conf.run_id, [inbound])
            self.billing.hold_in(grant, conf.run_id, leg_id)
            self._track(leg_id, conf.run_id, sip_leg.calling, decision.role, "in", sip=sip_leg)
            self._apply(conf.run_id, conf.join_inbound(leg_id, sip_leg.calling, decision.role, self.clock()))
            return None
        ic = self.records.instant_conference(decision.ic_id, dial_list=True) if decision.ic_id is not None else None
        room = self.records.room(decision.room_id) if decision.room_id is not None else None
        if ic is not None:
            billed = self.billing.launch_check(ic.subscriber, [ic.subscriber.mobile], self.clock())
            refusal = may_launch(ic.subscriber, billed=billed)  # not running: routing would have joined it
            if refusal is not None:
                log.info("speed dial of IC %s refused: %s", ic.id, refusal.cause)
                return Refused(f"launch refused: {refusal.cause}")
        launcher = ic.subscriber if ic is not None else None
        policy = conference_policy(
            self.config.conference, subscriber_number=launcher.mobile if launcher is not None else "",
            room=room is not None, room_max_members=room.max_members if room is not None else None,
        )  # fmt: skip
        seats = policy.max_participants
        dials = speed_dial_plan(ic.subscriber.mobile, ic.dial_list, max_participants=seats) if ic is not None else []
        company = launcher.company_id if launcher is not None else room.company_id if room is not None else None
        grant = self.billing.before_dial_in(company, launcher.subscriber_id if launcher else None, call.route.number)
        if isinstance(grant, BillingRefusal):
            return Refused(grant.cause)
        run_id, (leg_id, *_), actions = self._open(
            launcher=launcher, ic=ic, room=room, launched_by="dnis", policy=policy, dials=dials, inbound=inbound
        )
        self.billing.hold_in(grant, run_id, leg_id)
        self.legs[leg_id].sip = sip_leg
        self._by_sip[str(sip_leg.leg_id)] = leg_id
        self._apply(run_id, actions)
        return None

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
        conf = self._conf(run_id)
        try:
            number = to_e164(number, self.config.numbering.default_country)
        except PhoneError as exc:
            raise NotAllowed(f"bad number: {exc}") from exc
        actions = self._dial_more(conf, [(number, PARTICIPANT)])
        self._apply(run_id, actions)
        return next(a for a in actions if isinstance(a, Dial)).leg_id

    # --- SIP events ----------------------------------------------------------------------------

    def on_sip_event(self, event: LegEvent) -> None:
        if isinstance(event, IncomingCall):
            self.lobby.incoming(event.leg)  # refuses with 503 itself if anything fails
            return
        try:
            if self.lobby.on_event(event):
                return
            leg_id = self._by_sip.get(str(event.leg.leg_id))
            live = self.legs.get(leg_id) if leg_id is not None else None
            if live is None or live.run_id not in self.conferences:
                return
            conf = self.conferences[live.run_id]
            now = self.clock()
            if isinstance(event, LegRinging):
                actions = conf.ringing(live.leg_id, now)
            elif isinstance(event, LegAnswered):
                actions = conf.answered(live.leg_id, now)
            elif isinstance(event, LegFailed):
                actions = conf.failed(live.leg_id, _cause(event.cause, event.status), now)
            elif isinstance(event, LegEnded):
                actions = conf.ended_by_peer(live.leg_id, event.cause or "normal", now)
            elif isinstance(event, LegDtmf):
                actions = conf.dtmf(live.leg_id, event.digit, now)
            elif isinstance(event, LegHold):
                self._hold(live, event.on)
                return
            else:
                return
            self._apply(live.run_id, actions)
        except Exception:  # a bad event must never take the engine down
            log.exception("conference service: error handling %s", type(event).__name__)

    # --- timers --------------------------------------------------------------------------------

    def poll(self, now: float) -> None:
        for item in self.pacer.release(now):
            self._send_dial(item)
        self.lobby.poll(now)
        if self._later:
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
        for run_id, actions in self.billing.poll(now, self.conferences):  # warnings and cuts of prepaid legs
            self._apply(run_id, actions)
        self.lobby.poll_timers(now)

    def end_all(self, reason: str) -> None:
        for run_id in list(self.conferences):
            self.end(run_id, reason)
        self.lobby.end_all()

    # --- internals: runs and legs --------------------------------------------------------------

    def _open(
        self, *, launcher: Launcher | None, ic: IcView | None, room: RoomView | None, launched_by: str,
        policy: Policy, dials: Sequence[tuple[str, str]], inbound: NewLeg | None = None,
        sms: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, list[int], list[Action]]:  # fmt: skip
        """A new run with its machine: the ``inbound`` caller joined first, then ``dials`` ``(number, role)``."""
        outbound = [
            NewLeg(direction="out", role=role, calling=policy.calling_number, called=number) for number, role in dials
        ]
        legs = ([inbound] if inbound is not None else []) + outbound
        meta, leg_ids = self.records.open_run(
            subscriber=launcher, ic=ic, room=room, launched_by=launched_by, legs=legs, sms=sms
        )
        now = self.clock()
        conf = Conference(meta.run_id, policy, now=now)
        self.conferences[meta.run_id] = conf
        self.runs[meta.run_id] = meta
        actions: list[Action] = []
        for spec, leg_id in zip(legs, leg_ids, strict=True):
            number = spec.calling if spec.direction == "in" else spec.called
            self._track(leg_id, meta.run_id, number, spec.role, spec.direction)
            if spec.direction == "in":
                actions += conf.join_inbound(leg_id, number, spec.role, now)
            else:
                actions += conf.dial(leg_id, number, spec.role, now)
        return meta.run_id, leg_ids, actions

    def _dial_more(self, conf: Conference, dials: Sequence[tuple[str, str]], *, callback: bool = False) -> list[Action]:
        if conf.full:
            raise NotAllowed(f"conference {conf.run_id} is full")
        legs = [
            NewLeg(direction="out", role=role, calling=conf.policy.calling_number, called=number,
                   recorded=conf.recording)
            for number, role in dials
        ]  # fmt: skip
        actions: list[Action] = []
        for (number, role), leg_id in zip(dials, self.records.open_legs(conf.run_id, legs), strict=True):
            self._track(leg_id, conf.run_id, number, role, "out")
            actions += conf.dial(leg_id, number, role, self.clock(), callback=callback)
        return actions

    def _track(
        self, leg_id: int, run_id: int, number: str, role: str, direction: str, sip: SipLeg | None = None
    ) -> None:
        name = self.runs[run_id].names.get(number, "")
        self.legs[leg_id] = LiveLeg(leg_id, run_id, number, name, role, direction, sip=sip)
        if sip is not None:
            self._by_sip[str(sip.leg_id)] = leg_id

    def _apply(self, run_id: int, actions: list[Action]) -> None:
        conf = self.conferences.get(run_id)
        for action in actions:
            try:
                self._apply_one(run_id, conf, action)
            except Exception:
                log.exception("conference %s: failed to carry out %s", run_id, action)

    def _apply_one(self, run_id: int, conf: Conference | None, action: Action) -> None:
        if isinstance(action, Dial):
            # Sent from the next poll (the next media tick): a launch returns at once with its legs
            # "dialing", and a burst of dials is paced per trunk group.
            pending = _PendingDial(run_id, action.leg_id, action.number, action.calling)
            self.pacer.submit(pending, self.sip.first_group(action.number))
        elif isinstance(action, Hangup):
            self._hangup(run_id, action)
        elif isinstance(action, Join):
            self._join(action.leg_id, action.muted, run_id)
        elif isinstance(action, LegFinished):
            self._leg_finished(action)
        elif isinstance(action, Play):
            if action.leg_id is None:
                self._prompt_ends[run_id] = self.clock() + self.media.play(action.prompts, conference=run_id)
            else:
                live = self.legs.get(action.leg_id)
                if live is not None and live.pid is not None:
                    self.media.play(action.prompts, pid=live.pid)
        elif isinstance(action, SetMuted):
            live = self.legs.get(action.leg_id)
            if live is not None and live.pid is not None:
                self.media.set_muted(live.pid, action.muted or live.on_hold)
        elif isinstance(action, SetRecording):
            self._recording(run_id, action.on)
        elif isinstance(action, Callback) and conf is not None and not conf.ended:
            self._apply(run_id, self._dial_more(conf, [(action.number, SUBSCRIBER)], callback=True))
        elif isinstance(action, Ended):
            self._ended(run_id, action.reason)

    def _hangup(self, run_id: int, action: Hangup) -> None:
        self.pacer.discard(lambda item: item.leg_id == action.leg_id)
        live = self.legs.get(action.leg_id)
        if live is None or live.sip is None:
            return
        wait = 0.0
        if action.after_prompt:
            wait = min(self._prompt_ends.get(run_id, 0.0) - self.clock(), PROMPT_WAIT_MAX_S)
        if wait <= 0:
            self.sip.hangup(live.sip, action.cause)
            return
        # The leg keeps its call and media until the prompt has been heard; its row closes at once.
        live.lingering = True
        sip_leg, pid, cause = live.sip, live.pid, action.cause

        def release() -> None:
            self.sip.hangup(sip_leg, cause)
            if pid is not None:
                self.media.detach(pid)

        self._later.append((self.clock() + wait, release))

    def _send_dial(self, item: _PendingDial) -> None:
        live = self.legs.get(item.leg_id)
        conf = self.conferences.get(item.run_id)
        if live is None or conf is None or conf.ended:
            return
        refused = self.billing.before_dial(self.runs[item.run_id], conf, item.leg_id, item.number, self.clock())
        if refused is not None:
            return self._apply(item.run_id, conf.failed(item.leg_id, refused, self.clock()))
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
        endpoint = self.sip.media_endpoint(live.sip) if live.sip is not None else None
        live.pid = self.media.attach(run_id, endpoint, muted=muted or live.on_hold)
        self.billing.answered(leg_id, self.clock())
        self._by_pid[live.pid] = live
        quality = self.media.quality(live.pid)
        self.records.leg_joined(
            leg_id, at=live.joined_at, codec=quality.codec, packet_loss=quality.packet_loss, **_call_ids(live.sip)
        )

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
        loss = None
        if live.pid is not None:
            loss = self.media.quality(live.pid).packet_loss
            self._by_pid.pop(live.pid, None)
            if not live.lingering:  # else the hang-up timer frees it once the prompt has played
                self.media.detach(live.pid)
        self.billing.settle(action.leg_id, self.clock())  # sets the leg's price before its CDR is written
        self.records.leg_finished(
            action.leg_id, status=str(action.status), cause=action.cause, packet_loss=loss, **_call_ids(live.sip)
        )

    def _recording(self, run_id: int, on: bool) -> None:
        meta = self.runs.get(run_id)
        if meta is None:
            return
        if on:
            path = self.records.recording_path(run_id)
            self.media.start_recording(run_id, str(path))
            conf = self.conferences.get(run_id)
            leg_ids = [info.leg_id for info in conf.live_legs()] if conf is not None else []
            meta.recording_id = self.records.recording_started(run_id, path, leg_ids)
        else:
            self.media.stop_recording(run_id)
            if meta.recording_id is not None:
                self.records.recording_stopped(meta.recording_id)
                meta.recording_id = None

    def _ended(self, run_id: int, reason: str) -> None:
        self.conferences.pop(run_id, None)
        self.runs.pop(run_id, None)
        self._prompt_ends.pop(run_id, None)
        for leg_id in [k for k, v in self._finished.items() if v.run_id == run_id]:
            del self._finished[leg_id]
        self.pacer.discard(lambda item: item.run_id == run_id)
        self.records.run_ended(run_id, reason)
        log.info("conference %s ended: %s", run_id, reason)

    # --- helpers -------------------------------------------------------------------------------

    def _invitation(self, ic: IcView) -> str:
        dial_back = self.config.dnis.common or ic.dnis_number
        return f"{ic.subscriber.name} invites you to a conference. To join again call {dial_back} PIN {ic.user_pin}"

    def _conf(self, run_id: int) -> Conference:
        conf = self.conferences.get(run_id)
        if conf is None:
            raise UnknownConference(f"no running conference {run_id}")
        return conf


def _call_ids(sip_leg: SipLeg | None) -> dict[str, str]:
    """The SIP identifiers a leg's row keeps (the Call-ID changes on route advance: copied again at the end)."""
    if sip_leg is None:
        return {"call_id": "", "port_id": ""}
    return {"call_id": sip_leg.call_id, "port_id": sip_leg.port_id}


def _cause(cause: str, status: int) -> str:
    if cause:
        return cause
    return f"SIP {status}" if status else "no response"


__all__ = ["ConferenceService", "NotAllowed", "UnknownConference", "UnknownLeg"]
