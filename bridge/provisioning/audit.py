"""The audit log of provisioning changes -- from the machine APIs (``crm``, ``rest``) and the portal
(``portal``): who, what, when, before and after.

``snapshot_*`` give the JSON-ready state of an object (no secrets: a login shows its username only);
:func:`record` adds one :class:`~bridge.db.models.AuditEntry` in the caller's transaction, so a change and
its audit line are committed, or rolled back, together.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.db.models import Account, AuditEntry, Company, Contact, Group, InstantConference, Subscriber

Snapshot = dict[str, Any]


def snapshot_subscriber(session: Session, subscriber: Subscriber | None) -> Snapshot | None:
    if subscriber is None:
        return None
    login = session.scalars(select(Account).where(Account.subscriber_id == subscriber.id)).first()
    return {
        "id": subscriber.id,
        "company_id": subscriber.company_id,
        "name": subscriber.name,
        "mobile": subscriber.mobile,
        "email": subscriber.email,
        "status": subscriber.status.value,
        "prepaid": subscriber.prepaid,
        "balance": None if subscriber.balance is None else str(subscriber.balance),
        "username": login.username if login is not None else "",
        "login_active": login.active if login is not None else False,
    }


def snapshot_account(account: Account | None) -> Snapshot | None:
    """A portal login (never its password hash: ``password_set`` is False only for a login without one)."""
    if account is None:
        return None
    return {
        "id": account.id,
        "username": account.username,
        "role": account.role.value,
        "company_id": account.company_id,
        "subscriber_id": account.subscriber_id,
        "active": account.active,
        "locked_until": None if account.locked_until is None else account.locked_until.isoformat(),
    }


def snapshot_company(company: Company | None) -> Snapshot | None:
    if company is None:
        return None
    return {"id": company.id, "name": company.name, "timezone": company.timezone}


def snapshot_contact(contact: Contact | None) -> Snapshot | None:
    if contact is None:
        return None
    return {
        "id": contact.id, "subscriber_id": contact.subscriber_id, "nickname": contact.nickname, "phone": contact.phone,
        "first_name": contact.first_name, "last_name": contact.last_name,
    }  # fmt: skip


def _members(rows: Any, group_key: str) -> list[Snapshot]:
    return [
        {k: v for k, v in (("contact_id", m.contact_id), ("phone", m.phone), ("group_id", getattr(m, group_key))) if v}
        for m in rows
    ]


def snapshot_group(group: Group | None) -> Snapshot | None:
    if group is None:
        return None
    members = _members(group.members, "member_group_id")
    return {"id": group.id, "subscriber_id": group.subscriber_id, "name": group.name, "members": members}


def snapshot_ic(ic: InstantConference | None) -> Snapshot | None:
    """An Instant Conference (its PINs are secrets: only whether they changed is worth a line)."""
    if ic is None:
        return None
    return {
        "id": ic.id, "subscriber_id": ic.subscriber_id, "slot": ic.slot, "name": ic.name,
        "participant_sms": ic.participant_sms, "members": _members(ic.members, "group_id"),
    }  # fmt: skip


def _dump(snapshot: Snapshot | None) -> str:
    return "" if snapshot is None else json.dumps(snapshot, sort_keys=True, ensure_ascii=False)


def record(
    session: Session,
    *,
    actor: str,
    channel: str,
    action: str,
    object_type: str,
    object_id: int | None,
    before: Snapshot | None,
    after: Snapshot | None,
    now: dt.datetime,
    transaction: str = "",
) -> AuditEntry:
    """Add one audit line (flushed, not committed)."""
    entry = AuditEntry(
        at=now,
        actor=actor[:255],
        channel=channel,
        action=action,
        object_type=object_type,
        object_id=object_id,
        transaction=transaction[:200],
        before=_dump(before),
        after=_dump(after),
    )
    session.add(entry)
    session.flush()
    return entry
