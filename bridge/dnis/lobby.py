"""The dial-in lobby: every answered inbound call waits here, in the PIN prompt, until it joins a conference
or is refused. The glue around :class:`bridge.dnis.ivr.PinIvr` and :mod:`bridge.dnis.routing`.

An inbound call (:meth:`Lobby.incoming`): a caller blocked by the :class:`~bridge.dnis.ivr.FailureThrottle`
gets 403 and a number the bridge does not serve 404, both before answer and without a CDR; anything that
fails inside gets 503. Otherwise the call is answered and, once its media is up, put into a private mixer
"conference" of its own (negative ids) to hear the prompts. A room without a PIN is decided at once; else
the IVR collects the PIN and :func:`~bridge.dnis.routing.resolve_pin` says what it means.

A caller who passes goes to the :class:`LobbyHost` (the conference service), which joins them into a
conference -- or launches it (speed dial, the first caller of a room) -- or says why it cannot
(:class:`Refused`). A refused caller hears the refusal prompt and is hung up once it has played. An answered
call that never joined (refused, or the caller hung up first) is recorded as a run of its own with a failed
leg and its CDR (:meth:`bridge.conference.records.Records.unadmitted`), and a refusal is logged as an event.
All methods run on the engine's loop thread; ``clock`` is ``loop.time``, ``utc`` the wall clock of rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from bridge.conference.interfaces import MediaPort, SipPort
from bridge.conference.records import Unadmitted
from bridge.config import Config
from bridge.dnis import ivr
from bridge.dnis.ivr import FailureThrottle, IvrSettings, PinIvr, Verdict
from bridge.dnis.routing import Decision, Route, RouteKind, RunningConferences, admit_without_pin, classify, resolve_pin
from bridge.phone import PhoneError, to_e164
from bridge.sip.events import LegAnswered, LegDtmf, LegEnded, LegEvent, LegFailed
from bridge.sip.leg import SipLeg

log = logging.getLogger(__name__)

HANGUP_MARGIN_S = 0.3
"""Added to a refusal prompt's length before the BYE, so its last syllable is not cut by jitter buffers."""

_PIN_LESS_REFUSALS: dict[Verdict, tuple[str, str]] = {
    Verdict.FULL: ("conference_full", "conference full"),
    Verdict.LOCKED: ("conference_locked", "conference locked"),
}


@dataclass
class LobbyCall:
    """One answered (or being answered) inbound call in the lobby."""

    sip: SipLeg
    route: Route
    ivr: PinIvr | None
    lobby: int
    """Its private mixer conference (negative)."""
    arrived_at: dt.datetime
    pid: int | None = None
    decision: Decision | None = None
    answered: bool = False
    refusal: str = ""
    """Why the bridge ends the call ("wrong pin", "conference full"...); empty while it may still get in."""


@dataclass(frozen=True)
class Refused:
    """The host cannot carry out an admission: ``cause`` for the records, ``prompt`` to play first (or none)."""

    cause: str
    prompt: str | None = "goodbye"


class LobbyHost(RunningConferences, Protocol):
    """What the lobby needs of the conference service."""

    def admit(self, call: LobbyCall, decision: Decision) -> Refused | None:
        """Join the caller into the conference ``decision`` names (launching it when it says so), taking the
        call's media over from the lobby; or say why not (then nothing changed)."""
        ...


class LobbyRecords(Protocol):
    def event(self, kind: str, detail: str) -> None: ...

    def unadmitted(self, call: Unadmitted) -> None: ...


class Lobby:
    def __init__(
        self, config: Config, session_factory: sessionmaker[Session], *, sip: SipPort, media: MediaPort,
        records: LobbyRecords, host: LobbyHost, clock: Callable[[], float], utc: Callable[[], dt.datetime],
    ) -> None:  # fmt: skip
        self.config = config
        self.session_factory = session_factory
        self.sip = sip
        self.media = media
        self.records = records
        self.host = host
        self.clock = clock
        self.utc = utc
        self.calls: dict[str, LobbyCall] = {}
        self.throttle = FailureThrottle(
            limit=config.dnis.throttle_failures, window_s=config.dnis.throttle_window_s,
            block_s=config.dnis.throttle_block_s,
        )  # fmt: skip
        self._lobby_ids = 0
        self._hangups: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self.calls)

    # --- events --------------------------------------------------------------------------------

    def incoming(self, sip_leg: SipLeg) -> None:
        """An inbound INVITE the SIP side accepted: refuse it, or answer it into the lobby."""
        try:
            self._incoming(sip_leg)
        except Exception:  # a bad call must never take the engine down
            log.exception("lobby: error taking the call %s", sip_leg.leg_id)
            self.calls.pop(str(sip_leg.leg_id), None)
            try:
                self.sip.reject(sip_leg, 503, "Service Unavailable")
            except Exception:
                log.exception("rejecting %s failed", sip_leg.leg_id)

    def on_event(self, event: LegEvent) -> bool:
        """Handle ``event`` if it is about a call in the lobby (returns whether it was)."""
        call = self.calls.get(str(event.leg.leg_id))
        if call is None:
            return False
        now = self.clock()
        if isinstance(event, LegAnswered):
            call.answered = True
            call.pid = self.media.attach(call.lobby, self.sip.media_endpoint(call.sip))
            if call.ivr is not None:
                self._ivr_actions(call, call.ivr.start(now))
            else:
                with self.session_factory() as session:
                    decision = admit_without_pin(session, call.route, self.host)
                self._decide(call, decision)
        elif isinstance(event, LegDtmf):
            if call.ivr is not None:
                self._ivr_actions(call, call.ivr.digit(event.digit, now))
        elif isinstance(event, LegEnded | LegFailed):
            if call.ivr is not None:
                call.ivr.hangup()
            self._drop(call, hangup=False)
        return True

    # --- timers --------------------------------------------------------------------------------

    def poll(self, now: float) -> None:
        """Hang-ups due after their prompt (every tick)."""
        if not self._hangups:
            return
        due = [key for at, key in self._hangups if at <= now]
        if due:
            self._hangups = [(at, key) for at, key in self._hangups if at > now]
            for key in due:
                call = self.calls.get(key)
                if call is not None:  # None: the caller hung up while the refusal played
                    self._drop(call, hangup=True)

    def poll_timers(self, now: float) -> None:
        """The IVRs' digit timeouts (the service calls this at its timer resolution)."""
        for call in list(self.calls.values()):
            if call.ivr is not None and call.ivr.deadline is not None and now >= call.ivr.deadline:
                self._ivr_actions(call, call.ivr.poll(now))

    def end_all(self) -> None:
        for call in list(self.calls.values()):
            self._drop(call, hangup=True)

    # --- internals -----------------------------------------------------------------------------

    def _incoming(self, sip_leg: SipLeg) -> None:
        calling = self._normalise(sip_leg.calling)
        sip_leg.calling = calling
        if calling and self.throttle.blocked(calling, self.clock()):
            self.sip.reject(sip_leg, 403, "Too many failed PIN attempts")
            return
        with self.session_factory() as session:
            route = classify(session, self.config, sip_leg.called)
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
        pin_ivr = PinIvr(settings, name=str(sip_leg.leg_id)) if route.needs_pin else None
        call = LobbyCall(sip_leg, route, pin_ivr, lobby=-self._lobby_ids, arrived_at=self.utc())
        self.calls[str(sip_leg.leg_id)] = call
        self.sip.answer(sip_leg)

    def _ivr_actions(self, call: LobbyCall, actions: list[ivr.IvrAction]) -> None:
        delay = 0.0
        for action in actions:
            if isinstance(action, ivr.Play) and call.pid is not None:
                delay = self.media.play((action.prompt,), pid=call.pid)
            elif isinstance(action, ivr.CheckPin):
                with self.session_factory() as session:
                    decision = resolve_pin(session, call.route, action.pin, calling=call.sip.calling, running=self.host)
                call.decision = decision
                assert call.ivr is not None
                self._ivr_actions(call, call.ivr.verdict(decision.verdict, self.clock()))
            elif isinstance(action, ivr.Admit) and call.decision is not None:
                self._admit(call, call.decision)
            elif isinstance(action, ivr.Disconnect):
                call.refusal = action.cause
                if action.wrong_pin:
                    self.throttle.record_failure(call.sip.calling, self.clock())
                self.records.event("dial_in_refused", f"{call.sip.calling} -> {call.sip.called}: {action.cause}")
                self._hangup_after(call, delay)

    def _decide(self, call: LobbyCall, decision: Decision) -> None:
        """A PIN-less room: admit or refuse at once."""
        if decision.verdict is Verdict.ACCEPT:
            self._admit(call, decision)
            return
        prompt, cause = _PIN_LESS_REFUSALS.get(decision.verdict, ("goodbye", "refused"))
        call.decision = decision
        self._refuse(call, Refused(cause, prompt))

    def _admit(self, call: LobbyCall, decision: Decision) -> None:
        refused = self.host.admit(call, decision)
        if refused is not None:
            self._refuse(call, refused)
            return
        # Joined: the host attached the call's media to its conference (in this same synchronous step, so
        # no tick saw it in both); the lobby lets go of its own participant.
        self.calls.pop(str(call.sip.leg_id), None)
        if call.pid is not None:
            self.media.detach(call.pid)
            call.pid = None

    def _refuse(self, call: LobbyCall, refused: Refused) -> None:
        call.refusal = refused.cause
        if refused.prompt is None:
            self._drop(call, hangup=True)
            return
        delay = self.media.play((refused.prompt,), pid=call.pid) if call.pid is not None else 0.0
        self._hangup_after(call, delay)

    def _hangup_after(self, call: LobbyCall, delay: float) -> None:
        self._hangups.append((self.clock() + delay + HANGUP_MARGIN_S, str(call.sip.leg_id)))

    def _drop(self, call: LobbyCall, *, hangup: bool) -> None:
        """The call leaves the lobby without joining: release it and record it."""
        if self.calls.pop(str(call.sip.leg_id), None) is None:
            return  # already dropped (the caller hung up while a refusal prompt played)
        loss = None
        if call.pid is not None:
            loss = self.media.quality(call.pid).packet_loss
            self.media.detach(call.pid)
            call.pid = None
        if hangup:
            self.sip.hangup(call.sip, "normal")
        if call.answered:
            decision = call.decision  # names the IC only when a PIN did: an IC number is shared by every slot-x IC
            room_id = decision.room_id if decision is not None and decision.room_id is not None else call.route.room_id
            record = Unadmitted(
                calling=call.sip.calling, called=call.sip.called, dnis=call.route.number, arrived_at=call.arrived_at,
                refusal=call.refusal, ic_id=decision.ic_id if decision else None, room_id=room_id,
                call_id=call.sip.call_id, port_id=call.sip.port_id, packet_loss=loss,
            )  # fmt: skip
            self.records.unadmitted(record)

    def _normalise(self, number: str) -> str:
        """A caller's number in E.164 when it reads as one (CLI compared with subscribers' mobiles)."""
        try:
            return to_e164(number, self.config.numbering.default_country)
        except PhoneError:
            return number
