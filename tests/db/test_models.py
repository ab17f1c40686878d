"""Constraints the dial-in logic and the command language rely on are enforced by the database itself."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bridge.db.models import (
    Company,
    Contact,
    DnisKind,
    DnisNumber,
    Group,
    GroupMember,
    InstantConference,
    Subscriber,
    SubscriberStatus,
)


def make_subscriber(session: Session, mobile: str = "+15551230001") -> Subscriber:
    company = session.scalars(select(Company)).first() or Company(name="Acme")
    sub = Subscriber(company=company, name="A", mobile=mobile)
    session.add(sub)
    session.flush()
    return sub


def test_defaults(session: Session) -> None:
    sub = make_subscriber(session)
    assert sub.status == SubscriberStatus.ACTIVE
    assert sub.company.timezone == "UTC"
    assert sub.created_at is not None


@pytest.mark.parametrize(
    "duplicate",
    [
        lambda s, sub, d: Subscriber(company_id=sub.company_id, name="B", mobile=sub.mobile),
        lambda s, sub, d: Contact(subscriber_id=sub.id, nickname="bob", phone="+15551230009"),
        lambda s, sub, d: Group(subscriber_id=sub.id, name="Team"),
        lambda s, sub, d: InstantConference(subscriber_id=sub.id, slot=1, activation_pin="1", user_pin="9"),
        lambda s, sub, d: InstantConference(
            subscriber_id=make_subscriber(s, "+15551230002").id,
            slot=1,
            dnis_id=d.id,
            activation_pin="111",
            user_pin="9",
        ),
        lambda s, sub, d: InstantConference(
            subscriber_id=make_subscriber(s, "+15551230002").id, slot=2, activation_pin="7", user_pin="222"
        ),
        lambda s, sub, d: DnisNumber(number=d.number, kind=DnisKind.POOL, position=9),
    ],
    ids=["mobile", "nickname", "group", "slot", "activation-pin-per-dnis", "user-pin", "dnis-number"],
)
def test_unique_constraints(session: Session, duplicate: object) -> None:
    sub = make_subscriber(session)
    dnis = DnisNumber(number="+15550101", kind=DnisKind.POOL, position=1)
    session.add_all(
        [
            dnis,
            Contact(subscriber_id=sub.id, nickname="bob", phone="+15551230002"),
            Group(subscriber_id=sub.id, name="Team"),
        ]
    )
    session.flush()
    session.add(InstantConference(subscriber_id=sub.id, slot=1, dnis_id=dnis.id, activation_pin="111", user_pin="222"))
    session.flush()
    session.add(duplicate(session, sub, dnis))  # type: ignore[operator]
    with pytest.raises(IntegrityError):
        session.flush()


def test_same_activation_pin_on_different_dnis_is_allowed(session: Session) -> None:
    a, b = make_subscriber(session), make_subscriber(session, "+15551230002")
    d1 = DnisNumber(number="+15550101", kind=DnisKind.POOL, position=1)
    d2 = DnisNumber(number="+15550102", kind=DnisKind.POOL, position=2)
    session.add_all([d1, d2])
    session.flush()
    session.add(InstantConference(subscriber_id=a.id, slot=1, dnis_id=d1.id, activation_pin="111", user_pin="1"))
    session.add(InstantConference(subscriber_id=b.id, slot=2, dnis_id=d2.id, activation_pin="111", user_pin="2"))
    session.flush()


def test_deleting_a_contact_cascades_group_membership_in_the_database(session: Session) -> None:
    sub = make_subscriber(session)
    bob = Contact(subscriber_id=sub.id, nickname="bob", phone="+15551230002")
    team = Group(subscriber_id=sub.id, name="Team")
    session.add_all([bob, team])
    session.flush()
    session.add(GroupMember(group_id=team.id, contact_id=bob.id))
    session.commit()
    session.execute(Contact.__table__.delete().where(Contact.id == bob.id))
    assert session.scalars(select(GroupMember)).all() == []
