"""The audit log of changes made through the machine APIs: who, what, when, before and after.

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

from bridge.db.models import Account, AuditEntry, Company, Subscriber

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


def snapshot_company(company: Company | None) -> Snapshot | None:
    if company is None:
        return None
    return {"id": company.id, "name": company.name, "timezone": company.timezone}


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
