"""CDR test helpers: the tenant record, CDR/leg builders and the fixed clock origin ``T0``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bridge.db.models import Account, Cdr, Company, ConferenceRun, Leg, ServiceType, Subscriber

T0 = dt.datetime(2026, 3, 28, 10, 0, 0)  # a Saturday; Europe/Paris goes to summer time on the 29th


@dataclass
class Tenant:
    company_id: int
    subscriber_id: int
    other_subscriber_id: int
    other_company_id: int


def make_tenant(factory: sessionmaker[Session]) -> Tenant:
    with factory() as s, s.begin():
        acme = Company(name="Acme", timezone="Europe/Paris")
        globex = Company(name="Globex", timezone="America/New_York")
        s.add_all([acme, globex])
        s.flush()
        alice = Subscriber(company_id=acme.id, name="Alice", mobile="+15551230001", created_at=T0)
        bob = Subscriber(company_id=globex.id, name="Bob", mobile="+15551230002", created_at=T0)
        s.add_all([alice, bob])
        s.flush()
        s.add(
            Account(username="alice", password_hash="x", role="subscriber", company_id=acme.id, subscriber_id=alice.id)
        )
        return Tenant(acme.id, alice.id, bob.id, globex.id)


def add_cdr(session: Session, **fields: Any) -> Cdr:
    """Insert a CDR directly (for spool/export/report tests); times default around :data:`T0`."""
    defaults: dict[str, Any] = {
        "created_at": T0,
        "company_name": "Acme",
        "service_type": "IC",
        "direction": "out",
        "role": "participant",
        "called_at": T0 - dt.timedelta(minutes=10),
        "joined_at": T0 - dt.timedelta(minutes=9, seconds=50),
        "disconnected_at": T0 - dt.timedelta(minutes=1),
    }
    cdr = Cdr(**{**defaults, **fields})
    session.add(cdr)
    session.flush()
    return cdr


def add_run_with_legs(session: Session, tenant: Tenant, *, legs: int = 2) -> tuple[ConferenceRun, list[Leg]]:
    run = ConferenceRun(
        service_type=ServiceType.IC,
        subject="Weekly",
        company_id=tenant.company_id,
        subscriber_id=tenant.subscriber_id,
        started_at=T0,
        result="",
    )
    session.add(run)
    session.flush()
    made = []
    for i in range(legs):
        leg = Leg(
            run_id=run.id,
            direction="out",
            role="subscriber" if i == 0 else "participant",
            calling="+15551230001",
            called=f"+1444555000{i}",
            call_id=f"call-{i}@test",
            status="left",
            cause="normal",
            port_id=f"1:{i + 1}",
            codec="PCMU",
            packet_loss=0.5,
            called_at=T0,
            joined_at=T0 + dt.timedelta(seconds=5),
            disconnected_at=T0 + dt.timedelta(minutes=3, seconds=5, milliseconds=400),
        )
        session.add(leg)
        made.append(leg)
    session.flush()
    return run, made
