"""The provisioning core's subscriber life cycle (suspend, resume, delete), e-mail and balance, and the audit log."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.db.models import Account, AuditEntry, Company, ConferenceRun, ServiceType, Subscriber, SubscriberStatus
from bridge.provisioning import (
    UNKNOWN,
    ProvisioningError,
    check_balance,
    check_email,
    delete_subscriber,
    resume_subscriber,
    save_subscriber,
    suspend_subscriber,
)
from bridge.provisioning.audit import record, snapshot_subscriber

NOW = dt.datetime(2026, 11, 22, 12, 0, 0)


def _subscriber(session: Session) -> tuple[Subscriber, Account]:
    company = Company(name="Acme")
    session.add(company)
    session.flush()
    subscriber, login = save_subscriber(
        session, company_id=company.id, name="Ann", mobile="+15551230001", default_country="US",
        username="ann", password="secret-password", email="ann@example.com", balance="12.50", prepaid=True,
    )  # fmt: skip
    assert login is not None
    return subscriber, login


def test_email_and_balance_are_kept_and_checked(session: Session) -> None:
    subscriber, _ = _subscriber(session)
    assert subscriber.email == "ann@example.com"
    assert subscriber.balance == Decimal("12.50")
    save_subscriber(
        session, company_id=subscriber.company_id, name="Ann B", mobile=subscriber.mobile, default_country="US",
        prepaid=True, subscriber=subscriber,
    )  # fmt: skip
    assert (subscriber.email, subscriber.balance) == ("ann@example.com", Decimal("12.50"))  # None keeps
    for bad in ("no-at-sign", "a@b", "a b@c.d"):
        with pytest.raises(ProvisioningError) as info:
            check_email(bad)
        assert info.value.field == "email"
    for amount in ("1.234", "abc", "NaN", "1e20"):
        with pytest.raises(ProvisioningError) as info:
            check_balance(amount)
        assert info.value.field == "balance"
    assert check_balance("7") == Decimal("7.00")


def test_suspend_and_resume_follow_the_login(session: Session) -> None:
    subscriber, login = _subscriber(session)
    suspend_subscriber(session, subscriber)
    assert (subscriber.status, login.active) == (SubscriberStatus.SUSPENDED, False)
    resume_subscriber(session, subscriber)
    assert (subscriber.status, login.active) == (SubscriberStatus.ACTIVE, True)


def test_delete_without_history_removes_the_row_and_login(session: Session) -> None:
    subscriber, _ = _subscriber(session)
    assert delete_subscriber(session, subscriber, NOW) is True
    assert session.scalars(select(Subscriber)).all() == []
    assert session.scalars(select(Account)).all() == []


def test_delete_with_history_marks_deleted_and_refuses_again(session: Session) -> None:
    subscriber, login = _subscriber(session)
    company_id = subscriber.company_id
    session.add(ConferenceRun(service_type=ServiceType.IC, subscriber_id=subscriber.id, company_id=company_id))
    session.flush()
    assert delete_subscriber(session, subscriber, NOW) is False
    found = session.get(Subscriber, subscriber.id)
    assert found is not None and found.status == SubscriberStatus.DELETED and found.deleted_at == NOW
    assert session.get(Account, login.id) is not None and not login.active
    for change in (suspend_subscriber, resume_subscriber):
        with pytest.raises(ProvisioningError) as info:
            change(session, found)
        assert info.value.code == UNKNOWN
    with pytest.raises(ProvisioningError):
        delete_subscriber(session, found, NOW)


def test_audit_record_keeps_before_and_after_without_secrets(session: Session) -> None:
    subscriber, _ = _subscriber(session)
    before = snapshot_subscriber(session, subscriber)
    suspend_subscriber(session, subscriber)
    record(
        session, actor="CN=crm-1", channel="crm", action="suspend", object_type="subscriber",
        object_id=subscriber.id, before=before, after=snapshot_subscriber(session, subscriber), now=NOW,
    )  # fmt: skip
    entry = session.scalars(select(AuditEntry)).one()
    assert json.loads(entry.before)["status"] == "active" and json.loads(entry.after)["status"] == "suspended"
    assert "password" not in entry.after and "secret" not in entry.after
