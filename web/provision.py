"""Instant Conference provisioning for the portal: slot, DNIS and PINs.

The SMS language (``bridge.commands``) provisions ICs too; when it exposes ``assign_ic`` /
``regenerate_pins`` the portal uses those, so SMS and portal hand out slots and PINs the same way.
Until then these local rules apply (the data model's PIN uniqueness, see ``bridge/db/models.py``):
IC slot *x* holds pool DNIS number *x*; a user PIN is unique across all ICs; an activation PIN is
unique per DNIS.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge import commands
from bridge.config import Config
from bridge.db.models import DnisKind, DnisNumber, InstantConference, Subscriber
from web.errors import ProvisioningError


def free_slot(session: Session, subscriber: Subscriber, max_slots: int) -> int:
    used = set(session.scalars(select(InstantConference.slot).where(InstantConference.subscriber_id == subscriber.id)))
    for slot in range(1, max_slots + 1):
        if slot not in used:
            return slot
    raise ProvisioningError(f"all {max_slots} Instant Conference slots are in use")


def _random_pin(digits: int, rng: Any) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(digits))


def _pins(session: Session, dnis_id: int | None, digits: int, rng: Any, exclude_ic: int | None) -> tuple[str, str]:
    for _ in range(1000):
        activation = _random_pin(digits, rng)
        user = _random_pin(digits, rng)
        if activation == user:
            continue
        clash_user = select(InstantConference.id).where(InstantConference.user_pin == user)
        clash_act = select(InstantConference.id).where(
            InstantConference.dnis_id == dnis_id, InstantConference.activation_pin == activation
        )
        if exclude_ic is not None:
            clash_user = clash_user.where(InstantConference.id != exclude_ic)
            clash_act = clash_act.where(InstantConference.id != exclude_ic)
        if session.scalar(clash_user) is None and (dnis_id is None or session.scalar(clash_act) is None):
            return activation, user
    raise ProvisioningError("could not find free PINs; increase conference.pin_digits")


def create_ic(
    session: Session, subscriber: Subscriber, config: Config, name: str, rng: Any = None
) -> InstantConference:
    """A new IC in the subscriber's first free slot, with its pool DNIS and fresh PINs (flushed, not committed)."""
    rng = rng or secrets.SystemRandom()
    slot = free_slot(session, subscriber, config.conference.max_ics_per_subscriber)
    assign_ic = getattr(commands, "assign_ic", None)
    if assign_ic is not None:
        ic: InstantConference = assign_ic(session, subscriber, slot, config)
        ic.name = name
        session.flush()
        return ic
    dnis = session.scalar(select(DnisNumber).where(DnisNumber.kind == DnisKind.POOL, DnisNumber.position == slot))
    dnis_id = dnis.id if dnis is not None else None
    activation, user = _pins(session, dnis_id, config.conference.pin_digits, rng, None)
    ic = InstantConference(
        subscriber_id=subscriber.id,
        slot=slot,
        name=name,
        dnis_id=dnis_id,
        activation_pin=activation,
        user_pin=user,
        participant_sms=config.conference.participant_sms,
    )
    session.add(ic)
    session.flush()
    return ic


def regenerate_pins(session: Session, ic: InstantConference, config: Config, rng: Any = None) -> None:
    """New activation and user PINs for ``ic`` (flushed, not committed)."""
    shared = getattr(commands, "regenerate_pins", None)
    if shared is not None:
        shared(session, ic, config)
        session.flush()
        return
    rng = rng or secrets.SystemRandom()
    ic.activation_pin, ic.user_pin = _pins(session, ic.dnis_id, config.conference.pin_digits, rng, ic.id)
    session.flush()
