"""A small demo data set, so ``make run`` gives something to click through and text at.

DNIS numbers come from ``[dnis]`` and rooms from ``[[room]]`` (both idempotent); then one company,
one subscriber (mobile ``+15551230001``) with three users, a group and IC slot 1, and three portal
logins (operator, company admin, subscriber). The passwords are public: demo only.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridge.config import Config
from bridge.db.models import Account, Company, InstantConference, Role, Subscriber
from bridge.provisioning import (
    Member,
    ProvisioningError,
    assign_ic,
    load_configured_dnis,
    load_rooms,
    save_account,
    save_company,
    save_contact,
    save_group,
    save_subscriber,
    set_ic_members,
)

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


def _load_people(session: Session, config: Config) -> tuple[Subscriber, InstantConference]:
    """The company, its subscriber with the three logins, the contacts, the group and IC1 (through the core)."""
    company = save_company(session, name=DEMO_COMPANY, timezone="UTC")
    login, password, _role = DEMO_ACCOUNTS[2]
    subscriber, _account = save_subscriber(
        session,
        company_id=company.id,
        name="Demo Subscriber",
        mobile=DEMO_MOBILE,
        default_country=config.numbering.default_country,
        username=login,
        password=password,
    )
    for username, secret, role in DEMO_ACCOUNTS[:2]:
        save_account(
            session,
            username=username,
            role=role,
            password=secret,
            company_id=None if role == Role.OPERATOR else company.id,
        )
    contacts: list[Member] = []
    for nick, phone, first, last in DEMO_CONTACTS:
        contact, _changes = save_contact(
            session,
            subscriber.id,
            nickname=nick,
            phone=phone,
            default_country=config.numbering.default_country,
            first_name=first,
            last_name=last,
        )
        contacts.append(contact)
    team = save_group(session, subscriber.id, name="Team", members=contacts)
    ic = assign_ic(session, subscriber, 1, config)
    set_ic_members(session, ic, [team], config)
    return subscriber, ic


def load_demo(session: Session, config: Config) -> DemoSummary:
    """Load the demo data set (flushes, does not commit); raises :class:`DemoError` if already loaded."""
    if session.scalars(select(Company).where(Company.name == DEMO_COMPANY)).first() is not None:
        raise DemoError(f"company {DEMO_COMPANY!r} already exists: demo data already loaded")
    taken = session.scalars(select(Account.username).where(Account.username.in_([a[0] for a in DEMO_ACCOUNTS]))).all()
    if taken or session.scalars(select(Subscriber).where(Subscriber.mobile == DEMO_MOBILE)).first():
        raise DemoError(f"demo login or mobile already in use ({', '.join(taken) or DEMO_MOBILE})")
    dnis_added = load_configured_dnis(session, config)
    rooms_added = load_rooms(session, config.room)
    try:
        subscriber, ic = _load_people(session, config)
    except ProvisioningError as exc:
        raise DemoError(f"demo data cannot be loaded: {exc.message}") from exc

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
