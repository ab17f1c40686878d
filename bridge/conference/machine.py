"""The conference state machine: legs, subscriber presence, hysteresis, callbacks, DTMF controls.

Theory of operation (sans-I/O; the operator's Instant Conference rules, ../shared/DESIGN.md):

* The glue tells the machine about legs (:meth:`Conference.dial`, :meth:`Conference.join_inbound`)
  and about what happens to them (``ringing``/``answered``/``failed``/``ended``/``dtmf``), calls
  :meth:`Conference.poll` on a timer, and carries out the returned :class:`Action` objects. Leg ids
  are the database ``Leg.id`` so the control API and CDRs speak the same ids.
* Each leg walks ``dialing -> ringing -> connected -> left`` or ends ``failed`` (with a cause).
  Every leg reaches a terminal status exactly once, announced by :class:`LegFinished`.
* **Subscriber presence** (``Policy.require_subscriber``, ICs): the conference is ``ACTIVE`` while a
  subscriber leg is connected. When the subscriber's leg ends (or their first call fails) while
  somebody else is connected, the conference goes ``AWAY``: it ends ``hysteresis_s`` later unless a
  subscriber leg connects again, and meanwhile the bridge calls the subscriber back up to
  ``callback_retries`` times (one at a time, ``callback_delay_s`` apart). When the subscriber leaves
  and nobody else is connected, the conference ends at once. ``**`` from the subscriber (or a
  moderator) ends it for everyone.
* Rooms (``require_subscriber`` false) end when the last leg is gone.
* DTMF controls are two-key sequences starting with ``*`` (see :data:`KEY_MAP`); a lone ``*`` expires
  after ``key_timeout_s``.
* A hang-up that must wait for a prompt says so: ``**`` plays "goodbye" to everyone and ends the conference
  with ``Hangup(..., after_prompt=True)`` for each leg, so the glue keeps the leg's call and media until that
  prompt has been heard (at most :data:`PROMPT_WAIT_MAX_S`); the rows and CDRs close at once.
* Dials leave through a :class:`DialPacer`: one token bucket per trunk group, at the group's
  ``calls_per_second`` (README "SIP trunks"), so a large launch does not flood one gateway.

States are an Enum with a transition table; an illegal transition raises :class:`ConferenceError`.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from bridge.conference import ConferenceError, NotAllowed, UnknownLeg
from bridge.ratelimit import TokenBucket

log = logging.getLogger(__name__)
T = TypeVar("T")


class State(enum.Enum):
    STARTING = "starting"
    ACTIVE = "active"
    AWAY = "away"
    ENDED = "ended"


_TRANSITIONS: dict[State, frozenset[State]] = {
    State.STARTING: frozenset({State.ACTIVE, State.AWAY, State.ENDED}),
    State.ACTIVE: frozenset({State.AWAY, State.ENDED}),
    State.AWAY: frozenset({State.ACTIVE, State.ENDED}),
    State.ENDED: frozenset(),
}


class LegStatus(enum.StrEnum):
    DIALING = "dialing"
    RINGING = "ringing"
    CONNECTED = "connected"
    LEFT = "left"
    FAILED = "failed"


LIVE = frozenset({LegStatus.DIALING, LegStatus.RINGING, LegStatus.CONNECTED})

SUBSCRIBER = "subscriber"
MODERATOR = "moderator"
PARTICIPANT = "participant"
CONTROLLERS = frozenset({SUBSCRIBER, MODERATOR})

PROMPT_WAIT_MAX_S = 3.0
"""The longest a ``Hangup(after_prompt=True)`` waits for its prompt (a long prompt is cut, not waited for)."""

# Key map: second key after "*" -> (command, who may use it). Documented in README "DTMF key map"
# and spoken by the "help" prompt.
KEY_MAP: dict[str, tuple[str, frozenset[str]]] = {
    "0": ("help", frozenset({SUBSCRIBER, MODERATOR, PARTICIPANT})),
    "6": ("mute_self", frozenset({SUBSCRIBER, MODERATOR, PARTICIPANT})),
    "2": ("toggle_recording", CONTROLLERS),
    "3": ("count", CONTROLLERS),
    "4": ("mute_all", CONTROLLERS),
    "5": ("toggle_lock", CONTROLLERS),
    "*": ("end", CONTROLLERS),
}


# --- actions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """Base of every action the machine returns."""


@dataclass(frozen=True)
class Dial(Action):
    leg_id: int
    number: str
    calling: str


@dataclass(frozen=True)
class Hangup(Action):
    """Send BYE (connected) or CANCEL (dialing/ringing).

    ``after_prompt``: the conference prompt played just before (``Play(..., leg_id=None)`` in the same
    actions) must be heard first: the glue sends the BYE, and frees the leg's media, once it has played (at
    most :data:`PROMPT_WAIT_MAX_S` later). The leg's :class:`LegFinished` still follows at once.
    """

    leg_id: int
    cause: str
    after_prompt: bool = False


@dataclass(frozen=True)
class Join(Action):
    """Put the leg's media into the mixer."""

    leg_id: int
    muted: bool


@dataclass(frozen=True)
class LegFinished(Action):
    """The leg reached its terminal status: close its row, write its CDR, free its media."""

    leg_id: int
    status: LegStatus
    cause: str


@dataclass(frozen=True)
class Play(Action):
    """Play prompts in order to one leg, or to the whole conference when ``leg_id`` is None."""

    prompts: tuple[str, ...]
    leg_id: int | None = None


@dataclass(frozen=True)
class SetMuted(Action):
    leg_id: int
    muted: bool


@dataclass(frozen=True)
class SetRecording(Action):
    on: bool


@dataclass(frozen=True)
class Callback(Action):
    """Call the subscriber back: the glue creates a leg and calls :meth:`Conference.dial` with it."""

    number: str


@dataclass(frozen=True)
class Ended(Action):
    reason: str


# --- the machine ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Policy:
    require_subscriber: bool = True
    """IC rules (subscriber presence); False for rooms."""
    subscriber_number: str = ""
    """Number to call back (the subscriber's mobile)."""
    calling_number: str = ""
    """Calling number on dial-outs (the subscriber's mobile for ICs)."""
    hysteresis_s: float = 120.0
    callback_retries: int = 3
    callback_delay_s: float = 5.0
    max_participants: int = 100
    key_timeout_s: float = 3.0


@dataclass
class LegInfo:
    leg_id: int
    number: str
    role: str
    direction: str
    status: LegStatus
    called_at: float
    cause: str = ""
    muted: bool = False
    joined_at: float | None = None
    callback: bool = False
    star_at: float | None = None


@dataclass
class _Timers:
    end_at: float | None = None
    callback_at: float | None = None
    callbacks_left: int = 0


class Conference:
    """One running conference (an IC run or a room run)."""

    def __init__(self, run_id: int, policy: Policy, *, now: float) -> None:
        self.run_id = run_id
        self.policy = policy
        self.state = State.STARTING
        self.started = now
        self.legs: dict[int, LegInfo] = {}
        self.recording = False
        self.locked = False
        self.all_muted = False
        self.end_reason = ""
        self._timers = _Timers()
        self._subscriber_seen = False

    # --- views ---------------------------------------------------------------------------------

    def live_legs(self) -> list[LegInfo]:
        return [leg for leg in self.legs.values() if leg.status in LIVE]

    def connected(self) -> list[LegInfo]:
        return [leg for leg in self.legs.values() if leg.status is LegStatus.CONNECTED]

    @property
    def subscriber_present(self) -> bool:
        return any(leg.role == SUBSCRIBER for leg in self.connected())

    @property
    def full(self) -> bool:
        return len(self.live_legs()) >= self.policy.max_participants

    @property
    def ended(self) -> bool:
        return self.state is State.ENDED

    @property
    def end_at(self) -> float | None:
        """When the conference ends unless the subscriber returns (None: not counting down)."""
        return self._timers.end_at

    @property
    def callbacks_left(self) -> int:
        return self._timers.callbacks_left

    def next_deadline(self) -> float | None:
        times = [t for t in (self._timers.end_at, self._timers.callback_at) if t is not None]
        times += [leg.star_at + self.policy.key_timeout_s for leg in self.legs.values() if leg.star_at is not None]
        return min(times) if times else None

    # --- legs ----------------------------------------------------------------------------------

    def dial(self, leg_id: int, number: str, role: str, now: float, *, callback: bool = False) -> list[Action]:
        """Add an outbound leg; raises :class:`NotAllowed` when ended or full."""
        self._check_open()
        if self.full:
            raise NotAllowed(f"conference {self.run_id} is full ({self.policy.max_participants})")
        self.legs[leg_id] = LegInfo(leg_id, number, role, "out", LegStatus.DIALING, now, callback=callback)
        return [Dial(leg_id, number, self.policy.calling_number)]

    def join_inbound(self, leg_id: int, number: str, role: str, now: float) -> list[Action]:
        """Add an answered inbound leg that passed the IVR (the glue checked :attr:`locked`); raises
        :class:`NotAllowed` when ended or full -- a returning subscriber too: the cap holds for every seat."""
        self._check_open()
        if self.full:
            raise NotAllowed(f"conference {self.run_id} is full ({self.policy.max_participants})")
        self.legs[leg_id] = LegInfo(leg_id, number, role, "in", LegStatus.CONNECTED, now)
        return self._connected(self.legs[leg_id], now)

    def ringing(self, leg_id: int, now: float) -> list[Action]:
        leg = self._leg(leg_id)
        if leg.status is LegStatus.DIALING:
            leg.status = LegStatus.RINGING
        return []

    def answered(self, leg_id: int, now: float) -> list[Action]:
        leg = self._leg(leg_id)
        if leg.status not in (LegStatus.DIALING, LegStatus.RINGING):
            return []
        if self.ended:
            return self._finish(leg, LegStatus.LEFT, "conference ended", hangup=True)
        leg.status = LegStatus.CONNECTED
        return self._connected(leg, now)

    def failed(self, leg_id: int, cause: str, now: float) -> list[Action]:
        leg = self._leg(leg_id)
        if leg.status not in LIVE:
            return []
        actions = self._finish(leg, LegStatus.FAILED, cause, hangup=False)
        return actions + self._after_leg_gone(leg, now)

    def ended_by_peer(self, leg_id: int, cause: str, now: float) -> list[Action]:
        """The far end hung up (BYE, or CANCEL/failure reported as an end)."""
        leg = self._leg(leg_id)
        if leg.status not in LIVE:
            return []
        status = LegStatus.LEFT if leg.status is LegStatus.CONNECTED else LegStatus.FAILED
        actions = self._finish(leg, status, cause, hangup=False)
        if status is LegStatus.LEFT and not self.ended:
            actions.append(Play(("leave",)))
        return actions + self._after_leg_gone(leg, now)

    def kick(self, leg_id: int, now: float, *, cause: str = "kicked") -> list[Action]:
        """Hang up one leg: a moderator's kick, or billing's cut (``cause`` "credit exhausted")."""
        leg = self._leg(leg_id)
        if leg.status not in LIVE:
            raise NotAllowed(f"leg {leg_id} is not live")
        actions = self._finish(leg, self._end_status(leg), cause, hangup=True)
        return actions + self._after_leg_gone(leg, now)

    # --- controls ------------------------------------------------------------------------------

    def set_muted(self, leg_id: int, muted: bool) -> list[Action]:
        leg = self._leg(leg_id)
        if leg.status not in LIVE:
            raise NotAllowed(f"leg {leg_id} is not live")
        if leg.muted == muted:
            return []
        leg.muted = muted
        actions: list[Action] = [SetMuted(leg_id, muted)]
        if leg.status is LegStatus.CONNECTED:
            actions.append(Play(("muted" if muted else "unmuted",), leg_id))
        return actions

    def set_recording(self, on: bool) -> list[Action]:
        self._check_open()
        if self.recording == on:
            return []
        self.recording = on
        return [SetRecording(on), Play(("recording_started" if on else "recording_stopped",))]

    def set_locked(self, locked: bool) -> list[Action]:
        self._check_open()
        self.locked = locked
        return []

    def mute_all(self, muted: bool) -> list[Action]:
        """Mute (or unmute) every participant; the subscriber and moderators keep their state."""
        self._check_open()
        self.all_muted = muted
        actions: list[Action] = []
        for leg in self.live_legs():
            if leg.role == PARTICIPANT and leg.muted != muted:
                leg.muted = muted
                actions.append(SetMuted(leg.leg_id, muted))
        return actions

    def end(self, reason: str, now: float, *, after_prompt: bool = False) -> list[Action]:
        """End for everyone: hang up every live leg (``after_prompt``: once the prompt just played is heard)."""
        if self.ended:
            return []
        self.end_reason = reason
        self._set_state(State.ENDED)
        self._timers = _Timers()
        actions: list[Action] = []
        if self.recording:
            self.recording = False
            actions.append(SetRecording(False))
        for leg in self.live_legs():
            actions += self._finish(leg, self._end_status(leg), reason, hangup=True, after_prompt=after_prompt)
        actions.append(Ended(reason))
        return actions

    def dtmf(self, leg_id: int, digit: str, now: float) -> list[Action]:
        leg = self._leg(leg_id)
        if leg.status is not LegStatus.CONNECTED or self.ended:
            return []
        if leg.star_at is not None and now - leg.star_at > self.policy.key_timeout_s:
            leg.star_at = None
        if leg.star_at is None:
            if digit == "*":
                leg.star_at = now
            return []
        leg.star_at = None
        entry = KEY_MAP.get(digit)
        if entry is None or leg.role not in entry[1]:
            return [Play((_help_prompt(leg),), leg_id)] if entry is None else []
        return self._command(entry[0], leg, now)

    # --- timers --------------------------------------------------------------------------------

    def poll(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for leg in self.legs.values():
            if leg.star_at is not None and now - leg.star_at > self.policy.key_timeout_s:
                leg.star_at = None
        if self.ended:
            return actions
        timers = self._timers
        if timers.end_at is not None and now >= timers.end_at:
            return actions + self.end("subscriber did not return", now)
        if timers.callback_at is not None and now >= timers.callback_at:
            timers.callback_at = None
            if timers.callbacks_left > 0 and self.policy.subscriber_number:
                timers.callbacks_left -= 1
                actions.append(Callback(self.policy.subscriber_number))
        return actions

    # --- internals -----------------------------------------------------------------------------

    def _command(self, command: str, leg: LegInfo, now: float) -> list[Action]:
        if command == "help":
            return [Play((_help_prompt(leg),), leg.leg_id)]
        if command == "mute_self":
            return self.set_muted(leg.leg_id, not leg.muted)
        if command == "toggle_recording":
            return self.set_recording(not self.recording)
        if command == "count":
            return [Play(("participant_count", *str(len(self.connected()))), leg.leg_id)]
        if command == "mute_all":
            actions = self.mute_all(not self.all_muted)
            return actions + [Play(("muted" if self.all_muted else "unmuted",), leg.leg_id)]
        if command == "toggle_lock":
            self.set_locked(not self.locked)
            # There is no "unlocked" phrase: unlocking answers with the join beep.
            return [Play(("conference_locked" if self.locked else "join",), leg.leg_id)]
        if command == "end":
            reason = "ended by subscriber" if leg.role == SUBSCRIBER else "ended by moderator"
            return [Play(("goodbye",))] + self.end(reason, now, after_prompt=True)
        raise ConferenceError(f"unknown command {command!r}")  # pragma: no cover - KEY_MAP is closed

    def _connected(self, leg: LegInfo, now: float) -> list[Action]:
        leg.joined_at = now
        if leg.role == PARTICIPANT and self.all_muted:
            leg.muted = True
        actions: list[Action] = [Join(leg.leg_id, leg.muted)]
        alone = len(self.connected()) == 1
        actions.append(Play(("first_participant",), leg.leg_id) if alone else Play(("join",)))
        if leg.role == SUBSCRIBER:
            self._subscriber_seen = True
            self._timers = _Timers()
            if self.state is not State.ACTIVE:
                self._set_state(State.ACTIVE)
        elif not self.policy.require_subscriber and self.state is State.STARTING:
            self._set_state(State.ACTIVE)
        return actions

    def _after_leg_gone(self, leg: LegInfo, now: float) -> list[Action]:
        if self.ended:
            return []
        live = self.live_legs()
        if not live:
            return self.end("everyone left", now)
        if not self.policy.require_subscriber:
            return []
        if any(other.role == SUBSCRIBER for other in live):
            return []  # a subscriber leg is connected or being (re)dialled
        if leg.role == SUBSCRIBER and not self.connected():
            return self.end("subscriber left", now)  # the subscriber hung up after everyone else left
        if leg.role != SUBSCRIBER and self.state is State.AWAY and not self.connected():
            return self.end("everyone left", now)
        actions: list[Action] = []
        if self.state is not State.AWAY:
            self._set_state(State.AWAY)
            self._timers = _Timers(end_at=now + self.policy.hysteresis_s, callbacks_left=self.policy.callback_retries)
            log.info("conference %s: subscriber gone, ends in %.1f s", self.run_id, self.policy.hysteresis_s)
            actions.append(Play(("conference_will_end",)))
        if leg.role == SUBSCRIBER and self._timers.callbacks_left > 0:
            self._timers.callback_at = now + self.policy.callback_delay_s
        return actions

    def _finish(
        self, leg: LegInfo, status: LegStatus, cause: str, *, hangup: bool, after_prompt: bool = False
    ) -> list[Action]:
        leg.status = status
        leg.cause = cause
        leg.star_at = None
        actions: list[Action] = [Hangup(leg.leg_id, cause, after_prompt)] if hangup else []
        actions.append(LegFinished(leg.leg_id, status, cause))
        return actions

    @staticmethod
    def _end_status(leg: LegInfo) -> LegStatus:
        return LegStatus.LEFT if leg.status is LegStatus.CONNECTED else LegStatus.FAILED

    def _leg(self, leg_id: int) -> LegInfo:
        try:
            return self.legs[leg_id]
        except KeyError:
            raise UnknownLeg(f"conference {self.run_id} has no leg {leg_id}") from None

    def _check_open(self) -> None:
        if self.ended:
            raise NotAllowed(f"conference {self.run_id} has ended")

    def _set_state(self, new: State) -> None:
        if new is self.state:
            return
        if new not in _TRANSITIONS[self.state]:
            raise ConferenceError(f"conference {self.run_id}: {self.state.value} -> {new.value} is not allowed")
        log.info("conference %s: %s -> %s", self.run_id, self.state.value, new.value)
        self.state = new


def _help_prompt(leg: LegInfo) -> str:
    """Key-map help for the caller's role (``bridge.prompts``)."""
    return "help_moderator" if leg.role in CONTROLLERS else "help_participant"


def plan_launch(
    subscriber_number: str, numbers: tuple[str, ...] | list[str], *, max_participants: int
) -> list[tuple[str, str]]:
    """``(number, role)`` to dial: the subscriber first, members de-duplicated, capped at ``max_participants``."""
    plan: list[tuple[str, str]] = []
    seen: set[str] = set()
    if subscriber_number:
        plan.append((subscriber_number, SUBSCRIBER))
        seen.add(subscriber_number)
    for number in numbers:
        number = number.strip()
        if number and number not in seen:
            seen.add(number)
            plan.append((number, PARTICIPANT))
    return plan[:max_participants]


class DialPacer(Generic[T]):
    """Release queued dials at most ``calls_per_second`` per trunk group (one token bucket per group).

    Each dial is queued with the group it will leave on (``None``: no route; paced at ``default_rate``).
    A group's bucket holds up to one second's worth of dials (at least one), so a small conference rings
    all phones at once while a large launch is spread out instead of flooding the gateway; groups do not
    wait for each other. Within a group, dials leave in the order they were queued. Pure: ``now`` in.
    """

    def __init__(self, rates: Mapping[str, float], *, default_rate: float = 10.0) -> None:
        self.rates = dict(rates)
        self.default_rate = default_rate
        self._buckets: dict[str | None, TokenBucket] = {}
        self._queues: dict[str | None, deque[T]] = {}

    def submit(self, item: T, group: str | None) -> None:
        self._queues.setdefault(group, deque()).append(item)

    def release(self, now: float) -> list[T]:
        out: list[T] = []
        for group, queue in self._queues.items():
            if not queue:
                continue
            bucket = self._buckets.get(group)
            if bucket is None:
                rate = self.rates.get(group, self.default_rate) if group is not None else self.default_rate
                bucket = self._buckets[group] = TokenBucket(rate, max(1.0, rate), now=now)
            while queue and bucket.take(now):
                out.append(queue.popleft())
        return out

    def pending(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def discard(self, predicate: Callable[[T], bool]) -> None:
        for group, queue in list(self._queues.items()):
            if any(predicate(item) for item in queue):
                self._queues[group] = deque(item for item in queue if not predicate(item))
