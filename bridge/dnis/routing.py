"""Dial-in routing: which service a dialled number reaches, and what a PIN typed there means.

- The **common DNIS** takes a *user PIN* (unique across all ICs) and joins that IC's running
  conference ("this conference has not started" otherwise).
- An IC's **pool DNIS** takes the *activation PIN* (unique per DNIS): when the IC is not running the
  caller launches it as its subscriber (speed dial: the members are dialled); when it runs and its
  subscriber is present, a second holder joins as an attendee (one subscriber per IC). A user PIN
  typed on a pool DNIS joins like on the common number.
- A **room number** (issue 9) joins the room, after a PIN prompt when the room has a PIN; the
  moderator PIN gives the subscriber's controls. The first caller starts the room's conference.

A caller whose number is the IC subscriber's own mobile takes the subscriber seat when it is free, so
a subscriber who dropped can come back within the hysteresis on any of the IC's numbers.

The running conferences are seen through the small :class:`RunningConferences` protocol so this
module needs only a database session, never the live engine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.config import Config, expand_numbers
from bridge.db.models import DnisKind, DnisNumber, InstantConference, Room, SubscriberStatus
from bridge.dnis.ivr import Verdict


class RouteKind(enum.Enum):
    COMMON = "common"
    IC = "ic"
    ROOM = "room"


@dataclass(frozen=True)
class Route:
    """Where a dialled number leads. ``number`` is the form found in the database or config."""

    kind: RouteKind
    number: str
    room_id: int | None = None
    needs_pin: bool = True


@dataclass(frozen=True)
class RunningInfo:
    """What routing needs to know about a running conference."""

    run_id: int
    subscriber_present: bool
    locked: bool
    full: bool


class RunningConferences(Protocol):
    def for_ic(self, ic_id: int) -> RunningInfo | None: ...

    def for_room(self, room_id: int) -> RunningInfo | None: ...


@dataclass(frozen=True)
class Decision:
    """The outcome of a PIN (or of a PIN-less room call)."""

    verdict: Verdict
    role: str = "participant"
    """``subscriber``, ``moderator`` or ``participant``."""
    ic_id: int | None = None
    room_id: int | None = None
    run_id: int | None = None
    """The running conference to join; None with ``launch`` set means start a new one."""
    launch: bool = False
    activation_pin_used: bool = False


def number_forms(number: str, default_country: str) -> list[str]:
    """The spellings under which a dialled number may be stored: as dialled, ``+``-prefixed, E.164."""
    number = number.strip()
    forms = [number]
    digits = number.lstrip("+")
    if digits.isdigit():
        forms += [digits, "+" + digits]
        try:
            parsed = phonenumbers.parse(number, default_country)
            forms.append(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
        except phonenumbers.NumberParseException:
            pass
    return list(dict.fromkeys(forms))


def classify(session: Session, config: Config, number: str) -> Route | None:
    """The route of a dialled number, or None when the bridge does not serve it (SIP 404)."""
    forms = number_forms(number, config.numbering.default_country)
    dnis = session.scalars(select(DnisNumber).where(DnisNumber.number.in_(forms))).first()
    if dnis is not None:
        return Route(RouteKind.COMMON if dnis.kind is DnisKind.COMMON else RouteKind.IC, dnis.number)
    room = session.scalars(select(Room).where(Room.number.in_(forms))).first()
    if room is not None:
        return Route(RouteKind.ROOM, room.number, room_id=room.id, needs_pin=bool(room.pin))
    if config.dnis.common and config.dnis.common in forms:
        return Route(RouteKind.COMMON, config.dnis.common)
    pool = set(expand_numbers(config.dnis.pool, "dnis.pool"))
    for form in forms:
        if form in pool:
            return Route(RouteKind.IC, form)
    return None


def resolve_pin(session: Session, route: Route, pin: str, *, calling: str, running: RunningConferences) -> Decision:
    """What ``pin`` typed on ``route`` by ``calling`` leads to. Never raises for any PIN text."""
    if not pin.isdigit():
        return Decision(Verdict.WRONG)
    if route.kind is RouteKind.ROOM:
        return _room(session, route, pin, running)
    if route.kind is RouteKind.IC:
        ic = session.scalars(
            select(InstantConference)
            .join(DnisNumber, InstantConference.dnis_id == DnisNumber.id)
            .where(DnisNumber.number == route.number, InstantConference.activation_pin == pin)
        ).first()
        if ic is not None:
            return _activation(ic, calling, running)
    ic = session.scalars(select(InstantConference).where(InstantConference.user_pin == pin)).first()
    if ic is None:
        return Decision(Verdict.WRONG)
    return _user_pin(ic, calling, running)


def admit_without_pin(session: Session, route: Route, running: RunningConferences) -> Decision:
    """A call to a room without a PIN."""
    if route.kind is not RouteKind.ROOM or route.room_id is None:
        return Decision(Verdict.WRONG)
    room = session.get(Room, route.room_id)
    if room is None:
        return Decision(Verdict.WRONG)
    return _join_room(room, "participant", running)


def _activation(ic: InstantConference, calling: str, running: RunningConferences) -> Decision:
    if ic.subscriber.status is not SubscriberStatus.ACTIVE:
        return Decision(Verdict.NOT_STARTED, ic_id=ic.id)
    run = running.for_ic(ic.id)
    if run is None:
        return Decision(Verdict.ACCEPT, role="subscriber", ic_id=ic.id, launch=True, activation_pin_used=True)
    if not run.subscriber_present:
        return Decision(Verdict.ACCEPT, role="subscriber", ic_id=ic.id, run_id=run.run_id, activation_pin_used=True)
    refusal = _refusal(run)
    if refusal is not None:
        return Decision(refusal, ic_id=ic.id, run_id=run.run_id)
    return Decision(Verdict.ACCEPT, role="participant", ic_id=ic.id, run_id=run.run_id, activation_pin_used=True)


def _user_pin(ic: InstantConference, calling: str, running: RunningConferences) -> Decision:
    run = running.for_ic(ic.id)
    if run is None:
        return Decision(Verdict.NOT_STARTED, ic_id=ic.id)
    if calling and calling == ic.subscriber.mobile and not run.subscriber_present:
        return Decision(Verdict.ACCEPT, role="subscriber", ic_id=ic.id, run_id=run.run_id)
    refusal = _refusal(run)
    if refusal is not None:
        return Decision(refusal, ic_id=ic.id, run_id=run.run_id)
    return Decision(Verdict.ACCEPT, role="participant", ic_id=ic.id, run_id=run.run_id)


def _room(session: Session, route: Route, pin: str, running: RunningConferences) -> Decision:
    room = session.get(Room, route.room_id) if route.room_id is not None else None
    if room is None:
        return Decision(Verdict.WRONG)
    if room.moderator_pin and pin == room.moderator_pin:
        return _join_room(room, "moderator", running)
    if room.pin and pin == room.pin:
        return _join_room(room, "participant", running)
    return Decision(Verdict.WRONG, room_id=room.id)


def _join_room(room: Room, role: str, running: RunningConferences) -> Decision:
    run = running.for_room(room.id)
    if run is None:
        return Decision(Verdict.ACCEPT, role=role, room_id=room.id, launch=True)
    refusal = None if role == "moderator" and not run.full else _refusal(run)
    if refusal is not None:
        return Decision(refusal, room_id=room.id, run_id=run.run_id)
    return Decision(Verdict.ACCEPT, role=role, room_id=room.id, run_id=run.run_id)


def _refusal(run: RunningInfo) -> Verdict | None:
    if run.full:
        return Verdict.FULL
    if run.locked:
        return Verdict.LOCKED
    return None
