"""Instant Conference provisioning for the portal, delegated to ``bridge.provisioning``.

The SMS language and the portal hand out slots, pool DNIS numbers and PINs by the same rules (IC slot
*x* holds pool DNIS *x*; user PINs unique across ICs; activation PINs unique per DNIS). The portal
only adds "first free slot" (SMS names the slot explicitly). Nothing here commits.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge import provisioning
from bridge.config import Config, expand_numbers
from bridge.db.models import InstantConference, Subscriber
from bridge.provisioning import ProvisioningError as CommandProvisioningError
from web.errors import ProvisioningError


def free_slot(session: Session, subscriber: Subscriber, max_slots: int) -> int:
    used = set(session.scalars(select(InstantConference.slot).where(InstantConference.subscriber_id == subscriber.id)))
    for slot in range(1, max_slots + 1):
        if slot not in used:
            return slot
    raise ProvisioningError(f"all {max_slots} Instant Conference slots are in use")


def create_ic(session: Session, subscriber: Subscriber, config: Config, name: str) -> InstantConference:
    """A new IC in the subscriber's first free slot, with its pool DNIS and fresh PINs (flushed)."""
    slot = free_slot(session, subscriber, config.conference.max_ics_per_subscriber)
    try:
        ic = provisioning.assign_ic(session, subscriber, slot, config)
    except CommandProvisioningError as exc:
        raise ProvisioningError(exc.message) from exc
    ic.name = name
    session.flush()
    return ic


def regenerate_pins(session: Session, ic: InstantConference, config: Config) -> None:
    """New activation and user PINs for ``ic`` (flushed)."""
    try:
        provisioning.regenerate_pins(session, ic, config)
    except CommandProvisioningError as exc:
        raise ProvisioningError(exc.message) from exc


def load_configured_dnis(session: Session, config: Config) -> int:
    """Add ``[dnis]`` numbers from the config that the pool table lacks; returns how many."""
    return provisioning.load_dnis(
        session, common=config.dnis.common, pool=expand_numbers(config.dnis.pool, "dnis.pool")
    )
