"""A subscriber's life after creation: suspend, resume, delete.

- A suspended subscriber keeps everything but may not log in (its login is inactive) nor, being not
  ``active``, send commands or launch conferences; resuming restores both.
- Deleting removes the subscriber with its logins, contacts, groups and ICs when nothing refers to it;
  when history does (conference runs, CDRs, the SMS log) the row stays, marked ``deleted`` at ``now``,
  and its logins are deactivated, so the history keeps its subscriber.
- A deleted subscriber cannot be suspended, resumed or deleted again: :data:`UNKNOWN`, as if it were gone.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bridge.db.models import Account, Subscriber, SubscriberStatus
from bridge.provisioning.errors import UNKNOWN, ProvisioningError


def _logins(session: Session, subscriber: Subscriber) -> list[Account]:
    return list(session.scalars(select(Account).where(Account.subscriber_id == subscriber.id)))


def _alive(subscriber: Subscriber) -> None:
    if subscriber.status == SubscriberStatus.DELETED:
        raise ProvisioningError(f"no subscriber {subscriber.id}", field="subscriber", code=UNKNOWN)


def set_subscriber_status(session: Session, subscriber: Subscriber, status: SubscriberStatus) -> Subscriber:
    """Suspend (``SUSPENDED``) or resume (``ACTIVE``) ``subscriber``; its logins follow."""
    _alive(subscriber)
    if status == SubscriberStatus.DELETED:
        raise ValueError("use delete_subscriber() to delete")  # our mistake, not the caller's input
    subscriber.status = status
    for account in _logins(session, subscriber):
        account.active = status == SubscriberStatus.ACTIVE
    session.flush()
    return subscriber


def suspend_subscriber(session: Session, subscriber: Subscriber) -> Subscriber:
    return set_subscriber_status(session, subscriber, SubscriberStatus.SUSPENDED)


def resume_subscriber(session: Session, subscriber: Subscriber) -> Subscriber:
    return set_subscriber_status(session, subscriber, SubscriberStatus.ACTIVE)


def delete_subscriber(session: Session, subscriber: Subscriber, now: dt.datetime) -> bool:
    """Delete ``subscriber``; True when the row went, False when history keeps it (marked deleted at ``now``)."""
    _alive(subscriber)
    subscriber_id = subscriber.id
    try:
        with session.begin_nested():
            for account in _logins(session, subscriber):
                session.delete(account)
            session.delete(subscriber)
    except IntegrityError:
        # History (runs, CDRs, SMS log) refers to the subscriber: keep the row, mark it deleted, stop the logins.
        found = session.get(Subscriber, subscriber_id)
        assert found is not None  # the savepoint rolled the delete back
        found.status = SubscriberStatus.DELETED
        found.deleted_at = now
        for account in _logins(session, found):
            account.active = False
        session.flush()
        return False
    return True
