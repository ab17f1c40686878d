"""A small demo data set, so ``make run`` gives something to click through and text at.

DNIS numbers come from ``[dnis]`` and rooms from ``[[room]]`` (both idempotent); then one company,
one subscriber (mobile ``+15551230001``) with three users, a group and IC slot 1, and three portal
logins (operator, company admin, subscriber). The passwords are public: demo only.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from bridge.config import Config, expand_numbers
from bridge.db.models import Account, Company, Contact, Group, GroupMember, Role, Subscriber
from bridge.provisioning import assign_ic, load_dnis, load_rooms, set_ic_members

DEMO_COMPANY = "Demo Co"
DEMO_MOBILE = "+15551230001"
DEMO_ACCOUNTS = (
    ("operator", "operator-demo", Role.OPERATOR),
    ("admin", "admin-demo", Role.COMPANY_ADMIN),
    ("subscriber", "subscriber-demo", Role.SUBSCRIBER),
)
DEMO_CONTACTS = (
    ("ann", "+15551230002", "Ann", "Archer"),
    ("bob", "+15551230003", "Bob", "Baker"),
    ("carol", "+15551230004", "Carol", "Chen"),
)


class DemoError(Exception):
    """The demo data cannot be loaded (already there, or a name it needs is taken)."""


@dataclass(frozen=True)
class DemoSummary:
    """What was loaded, for printing."""

    dnis_added: int
    rooms_added: int
    company_loaded: bool
    lines: tuple[str, ...]


def is_empty(session: Session) -> bool:
    """True when no company and no portal account exist yet (a fresh database)."""
    companies = session.scalar(select(func.count()).select_from(Company)) or 0
    accounts = session.scalar(select(func.count()).select_from(Account)) or 0
    return companies == 0 and accounts == 0


def load_demo(session: Session, config: Config) -> DemoSummary:
    """Load the demo data set (flushes, does not commit); raises :class:`DemoError` if already loaded."""
    if session.scalars(select(Company).where(Company.name == DEMO_COMPANY)).first() is not None:
        raise DemoError(f"company {DEMO_COMPANY!r} already exists: demo data already loaded")
    taken = session.scalars(select(Account.username).where(Account.username.in_([a[0] for a in DEMO_ACCOUNTS]))).all()
    if taken or session.scalars(select(Subscriber).where(Subscriber.mobile == DEMO_MOBILE)).first():
        raise DemoError(f"demo login or mobile already in use ({', '.join(taken) or DEMO_MOBILE})")
    dnis_added = load_dnis(session, common=config.dnis.common, pool=expand_numbers(config.dnis.pool, "dnis.pool"))
    rooms_added = load_rooms(session, config.room)

    company = Company(name=DEMO_COMPANY, timezone="UTC")
    subscriber = Subscriber(company=company, name="Demo Subscriber", mobile=DEMO_MOBILE)
    session.add_all([company, subscriber])
    session.flush()
    for username, password, role in DEMO_ACCOUNTS:
        session.add(
            Account(
                username=username,
                password_hash=generate_password_hash(password),
                role=role,
                company_id=None if role == Role.OPERATOR else company.id,
                subscriber_id=subscriber.id if role == Role.SUBSCRIBER else None,
            )
        )
    contacts = [
        Contact(subscriber_id=subscriber.id, nickname=nick, phone=phone, first_name=first, last_name=last)
        for nick, phone, first, last in DEMO_CONTACTS
    ]
    session.add_all(contacts)
    session.flush()
    team = Group(subscriber_id=subscriber.id, name="Team")
    team.members = [GroupMember(position=i, contact_id=c.id) for i, c in enumerate(contacts)]
    session.add(team)
    session.flush()
    ic = assign_ic(session, subscriber, 1, config)
    set_ic_members(session, ic, [team], config)

    lines = [
        f"demo company {DEMO_COMPANY!r}, subscriber {subscriber.name} mobile {DEMO_MOBILE}",
        "portal logins (demo only, change them): "
        + ", ".join(f"{user}/{password} ({role.value})" for user, password, role in DEMO_ACCOUNTS),
        "users ann, bob, carol; group Team; IC1 = Team"
        + (f", launch by calling {ic.dnis.number} PIN {ic.activation_pin}" if ic.dnis else "")
        + f", user PIN {ic.user_pin}",
        f"try: bridge sms simulate --from {DEMO_MOBILE} IC1",
    ]
    return DemoSummary(dnis_added=dnis_added, rooms_added=rooms_added, company_loaded=True, lines=tuple(lines))
