"""Meet-me rooms: a number that goes straight to a named conference, PIN and moderator PIN optional.

A room's number must be dialable (digits, optional leading ``+``) and answered by nothing else: no other
room and no DNIS number, in the database or configured, under any spelling the gateway may send
(:func:`bridge.dnis.routing.number_forms`). PINs are 1 to 7 digits; the moderator PIN differs from the PIN.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.config import Config, RoomConfig, expand_numbers
from bridge.db.models import ConferenceRun, DnisNumber, Room
from bridge.dnis.routing import number_forms
from bridge.provisioning.errors import EXISTS, LIMIT, UNKNOWN, ProvisioningError

ROOM_NAME_MAX = 60
PIN_MAX = 7


def _room_number(session: Session, config: Config, number: str) -> str:
    number = number.strip()
    if not (number.lstrip("+").isdigit() and len(number) <= 20):
        raise ProvisioningError(f"{number!r} is not a number (digits, optional leading +)", field="number")
    forms = number_forms(number, config.numbering.default_country)
    clash = session.scalars(select(Room).where(Room.number.in_(forms))).first()
    if clash is not None:
        raise ProvisioningError(
            f"room number {number} is taken by room {clash.number} {clash.name!r}", field="number", code=EXISTS
        )
    dnis_row = session.scalars(select(DnisNumber).where(DnisNumber.number.in_(forms))).first()
    configured = [config.dnis.common] if config.dnis.common else []
    configured += expand_numbers(config.dnis.pool, "dnis.pool")
    taken = dnis_row.number if dnis_row is not None else next((n for n in configured if n in forms), None)
    if taken is not None:
        raise ProvisioningError(
            f"room number {number} clashes with the DNIS number {taken}", field="number", code=EXISTS
        )
    return number


def _pin(value: str, field: str) -> str:
    pin = value.strip()
    if pin and not (pin.isdigit() and len(pin) <= PIN_MAX):
        raise ProvisioningError(f"PINs are 1 to {PIN_MAX} digits", field=field)
    return pin


def add_room(
    session: Session,
    config: Config,
    *,
    number: str,
    name: str,
    pin: str = "",
    moderator_pin: str = "",
    max_members: int = 0,
    company_id: int | None = None,
) -> Room:
    """A new room (``max_members`` 0: the conference default), checked as the module docstring says."""
    name = name.strip()
    if not 0 < len(name) <= ROOM_NAME_MAX:
        raise ProvisioningError(f"1 to {ROOM_NAME_MAX} characters", field="name")
    pin, moderator_pin = _pin(pin, "pin"), _pin(moderator_pin, "moderator_pin")
    if moderator_pin and moderator_pin == pin:
        raise ProvisioningError("the moderator PIN must differ from the PIN", field="moderator_pin")
    if not 0 <= max_members <= config.conference.max_participants:
        raise ProvisioningError(f"0 to {config.conference.max_participants}", field="max_members", code=LIMIT)
    number = _room_number(session, config, number)
    room = Room(
        number=number, name=name, pin=pin, moderator_pin=moderator_pin, max_members=max_members, company_id=company_id
    )
    session.add(room)
    session.flush()
    return room


def delete_room(session: Session, number: str) -> Room:
    """Delete the room dialled on ``number``; refused while its conference runs. Past runs lose only the link
    (their service type, subject and CDRs stay). Returns the deleted row."""
    room = session.scalars(select(Room).where(Room.number == number.strip())).first()
    if room is None:
        raise ProvisioningError(f"no room with number {number.strip()!r}", field="number", code=UNKNOWN)
    runs = list(session.scalars(select(ConferenceRun).where(ConferenceRun.room_id == room.id)))
    if any(run.ended_at is None for run in runs):
        raise ProvisioningError(f"room {room.number} has a running conference: end it first", field="number")
    for run in runs:
        run.room_id = None
    session.delete(room)
    session.flush()
    return room


def load_rooms(session: Session, rooms: Iterable[RoomConfig]) -> int:
    """Insert ``[[room]]`` entries whose number is not in the Room table yet; returns how many."""
    known = set(session.scalars(select(Room.number)))
    added = 0
    for room in rooms:
        if room.number in known:
            continue
        session.add(
            Room(
                number=room.number,
                name=room.name,
                pin=room.pin,
                moderator_pin=room.moderator_pin,
                max_members=room.max_members,
            )
        )
        known.add(room.number)
        added += 1
    session.flush()
    return added
