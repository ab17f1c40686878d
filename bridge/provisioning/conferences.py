"""Instant Conferences: slots, pool DNIS numbers, PINs, members and the ad hoc limit; the DNIS pool.

An Instant Conference in slot *x* holds pool DNIS number *x* (``DnisNumber`` kind POOL, position *x*),
so every subscriber's IC *x* shares one dial-in number. Two PINs are generated with :mod:`secrets`:

- the activation PIN, unique among the ICs on the same DNIS (DNIS + activation PIN -> one IC);
- the user PIN, unique across all ICs (the common DNIS + user PIN -> one IC), and never equal to the
  IC's own activation PIN.

Nothing here commits: the caller owns the transaction. A concurrent insert of the same PIN is caught by
the database's unique constraints (``IntegrityError``); the caller rolls back and retries.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridge.config import Config, expand_numbers
from bridge.db.models import (
    Contact,
    DnisKind,
    DnisNumber,
    Group,
    IcMember,
    InstantConference,
    Subscriber,
)
from bridge.provisioning.contacts import Member
from bridge.provisioning.errors import LIMIT, ProvisioningError

_RANDOM_TRIES = 200
IC_NAME_MAX = 60


def generate_pin(digits: int, taken: Collection[str]) -> str:
    """A random ``digits``-long PIN not in ``taken``; raises :class:`ProvisioningError` when none is left."""
    space = 10**digits
    for _ in range(_RANDOM_TRIES):
        pin = f"{secrets.randbelow(space):0{digits}d}"
        if pin not in taken:
            return pin
    # Nearly exhausted: walk the space from a random start so a free PIN is still found if one exists.
    start = secrets.randbelow(space)
    for offset in range(space):
        pin = f"{(start + offset) % space:0{digits}d}"
        if pin not in taken:
            return pin
    raise ProvisioningError(f"no free {digits}-digit PIN left; raise conference.pin_digits", code=LIMIT)


def pool_dnis(session: Session, slot: int) -> DnisNumber | None:
    """Pool DNIS number for IC slot ``slot`` (``None`` when the pool is shorter)."""
    return session.scalars(
        select(DnisNumber).where(DnisNumber.kind == DnisKind.POOL, DnisNumber.position == slot)
    ).first()


def common_dnis(session: Session, config: Config) -> str:
    """The common dial-in number: from the database, else from ``[dnis] common`` ("" when neither)."""
    number = session.scalars(
        select(DnisNumber.number).where(DnisNumber.kind == DnisKind.COMMON).order_by(DnisNumber.id)
    ).first()
    return number or config.dnis.common


def _activation_pins(session: Session, dnis_id: int | None, exclude_ic: int | None) -> set[str]:
    query = select(InstantConference.activation_pin).where(
        InstantConference.dnis_id.is_(None) if dnis_id is None else InstantConference.dnis_id == dnis_id
    )
    if exclude_ic is not None:
        query = query.where(InstantConference.id != exclude_ic)
    return set(session.scalars(query))


def _user_pins(session: Session, exclude_ic: int | None) -> set[str]:
    query = select(InstantConference.user_pin)
    if exclude_ic is not None:
        query = query.where(InstantConference.id != exclude_ic)
    return set(session.scalars(query))


def find_ic(session: Session, subscriber_id: int, slot: int) -> InstantConference | None:
    return session.scalars(
        select(InstantConference).where(
            InstantConference.subscriber_id == subscriber_id, InstantConference.slot == slot
        )
    ).first()


def assign_ic(session: Session, subscriber: Subscriber, slot: int, config: Config) -> InstantConference:
    """The subscriber's IC in ``slot``, created with its pool DNIS and fresh PINs when new.

    An existing IC keeps its PINs (people know them); it only gets its DNIS if the pool was short when
    it was created and has grown since.
    """
    limit = config.conference.max_ics_per_subscriber
    if not 1 <= slot <= limit:
        raise ProvisioningError(f"slot {slot} out of range 1-{limit}", field="slot", code=LIMIT)
    ic = find_ic(session, subscriber.id, slot)
    dnis = pool_dnis(session, slot)
    if ic is not None:
        if ic.dnis_id is None and dnis is not None:
            if ic.activation_pin in _activation_pins(session, dnis.id, ic.id):
                ic.activation_pin = generate_pin(len(ic.user_pin), _activation_pins(session, dnis.id, ic.id))
            ic.dnis = dnis
            session.flush()
        return ic
    digits = config.conference.pin_digits
    activation = generate_pin(digits, _activation_pins(session, dnis.id if dnis else None, None))
    user = generate_pin(digits, _user_pins(session, None) | {activation})
    ic = InstantConference(
        subscriber_id=subscriber.id,
        slot=slot,
        name=f"IC{slot}",
        dnis=dnis,
        activation_pin=activation,
        user_pin=user,
        participant_sms=config.conference.participant_sms,
    )
    session.add(ic)
    session.flush()
    return ic


def free_slot(session: Session, subscriber: Subscriber, config: Config) -> int:
    """The subscriber's first IC slot without an IC (the portal's "new IC"; SMS names the slot)."""
    used = set(session.scalars(select(InstantConference.slot).where(InstantConference.subscriber_id == subscriber.id)))
    limit = config.conference.max_ics_per_subscriber
    for slot in range(1, limit + 1):
        if slot not in used:
            return slot
    raise ProvisioningError(f"all {limit} Instant Conference slots are in use", field="slot", code=LIMIT)


def _check_ic_name(name: str) -> str:
    name = name.strip()
    if not 0 < len(name) <= IC_NAME_MAX:
        raise ProvisioningError(f"give a name of 1 to {IC_NAME_MAX} characters", field="name")
    return name


def create_ic(session: Session, subscriber: Subscriber, config: Config, name: str) -> InstantConference:
    """A new IC named ``name`` in the subscriber's first free slot, with its pool DNIS and fresh PINs."""
    name = _check_ic_name(name)
    ic = assign_ic(session, subscriber, free_slot(session, subscriber, config), config)
    ic.name = name
    session.flush()
    return ic


def update_ic(
    session: Session,
    ic: InstantConference,
    config: Config,
    *,
    name: str,
    members: Sequence[Member],
    participant_sms: bool,
) -> None:
    """Rename ``ic``, replace its members (:func:`set_ic_members`) and set its participant SMS option."""
    name = _check_ic_name(name)
    set_ic_members(session, ic, members, config)
    ic.name = name
    ic.participant_sms = participant_sms
    session.flush()


def regenerate_pins(session: Session, ic: InstantConference, config: Config) -> None:
    """Give ``ic`` a new activation PIN and user PIN (both unique as required), e.g. after a leak."""
    digits = config.conference.pin_digits
    ic.activation_pin = generate_pin(digits, _activation_pins(session, ic.dnis_id, ic.id) | {ic.activation_pin})
    ic.user_pin = generate_pin(digits, _user_pins(session, ic.id) | {ic.user_pin, ic.activation_pin})
    session.flush()


def check_adhoc(count: int, config: Config) -> None:
    """An IC (defined or launched ad hoc) calls at most ``conference.max_adhoc`` raw numbers."""
    if count > config.conference.max_adhoc:
        raise ProvisioningError(
            f"at most {config.conference.max_adhoc} ad hoc numbers, got {count}", field="numbers", code=LIMIT
        )


def set_ic_members(session: Session, ic: InstantConference, members: Sequence[Member], config: Config) -> None:
    """Replace ``ic``'s members (order kept); at most ``conference.max_adhoc`` raw numbers."""
    check_adhoc(sum(isinstance(m, str) for m in members), config)
    ic.members.clear()
    session.flush()
    for position, member in enumerate(members):
        if isinstance(member, Contact):
            ic.members.append(IcMember(position=position, contact_id=member.id))
        elif isinstance(member, Group):
            ic.members.append(IcMember(position=position, group_id=member.id))
        else:
            ic.members.append(IcMember(position=position, phone=member))
    session.flush()


def load_dnis(session: Session, *, common: str = "", pool: Iterable[str] = ()) -> int:
    """Add the common number and pool numbers not yet known; pool positions continue after the last.

    Numbers are stored as written (they are matched against the called number the gateway sends);
    ``"A-B"`` ranges are expanded as in ``[dnis] pool``. Returns how many rows were added.
    """
    pool = expand_numbers(list(pool), "dnis.pool")
    known = set(session.scalars(select(DnisNumber.number)))
    added = 0
    if common and common not in known:
        session.add(DnisNumber(number=common, kind=DnisKind.COMMON, position=0))
        known.add(common)
        added += 1
    position = session.scalar(select(func.max(DnisNumber.position)).where(DnisNumber.kind == DnisKind.POOL)) or 0
    for number in pool:
        if number in known:
            continue
        position += 1
        session.add(DnisNumber(number=number, kind=DnisKind.POOL, position=position))
        known.add(number)
        added += 1
    session.flush()
    return added


def load_configured_dnis(session: Session, config: Config) -> int:
    """Add the ``[dnis]`` numbers of ``config`` that the table lacks (:func:`load_dnis`); returns how many."""
    return load_dnis(session, common=config.dnis.common, pool=expand_numbers(config.dnis.pool, "dnis.pool"))
