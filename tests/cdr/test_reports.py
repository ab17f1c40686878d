from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.reports import (
    ConferenceLegUsage,
    DailyMinutes,
    ModeratorUsage,
    conference_report,
    minutes_per_day,
    usage_by_moderator,
)
from bridge.db.models import Contact
from tests.cdr.cdr_world import T0, Tenant, add_cdr

S = dt.timedelta(seconds=1)


def seed(s: Session, tenant: Tenant) -> None:
    alice = {"company_id": tenant.company_id, "subscriber_id": tenant.subscriber_id, "moderator_ident": "alice",
             "moderator_name": "Alice", "service_subject": "Weekly"}  # fmt: skip
    joined = T0
    # run 1 (IC): Alice 125 s, a participant 61 s (billed 3 + 2 = 5 minutes)
    add_cdr(s, **alice, service_id=1, role="subscriber", destination="+15551230001", joined_at=joined,
            disconnected_at=joined + 125 * S, called_at=joined - 5 * S)  # fmt: skip
    add_cdr(s, **alice, service_id=1, destination="+14445550001", joined_at=joined,
            disconnected_at=joined + 61 * S, called_at=joined - 4 * S)  # fmt: skip
    # run 2 (IC), a leg that never joined, on the next day
    add_cdr(s, **alice, service_id=2, destination="+14445550002", joined_at=None,
            disconnected_at=joined + dt.timedelta(days=1), called_at=joined + dt.timedelta(days=1))  # fmt: skip
    # another tenant's run, a dial-in room
    add_cdr(s, company_id=tenant.other_company_id, company_name="Globex", service_id=3, service_type="room",
            direction="in", cli="+15550009999", joined_at=joined, disconnected_at=joined + 30 * S)  # fmt: skip
    s.add(Contact(subscriber_id=tenant.subscriber_id, nickname="bobby", phone="+14445550001", first_name="Bob",
                  last_name="Smith"))  # fmt: skip
    s.commit()


def test_usage_by_moderator(factory: sessionmaker[Session], tenant: Tenant) -> None:
    with factory() as s:
        seed(s, tenant)
        usage = usage_by_moderator(s, start=T0 - dt.timedelta(days=1), end=T0 + dt.timedelta(days=2))
        assert usage == [
            ModeratorUsage(
                "Acme", tenant.subscriber_id, "alice", "Alice", "IC", events=2, legs=3, seconds=186, minutes=5
            ),  # fmt: skip
            ModeratorUsage("Globex", None, "", "", "room", events=1, legs=1, seconds=30, minutes=1),
        ]
        scoped = usage_by_moderator(s, start=T0, end=T0 + dt.timedelta(hours=1), company_id=tenant.company_id)
        assert [(u.events, u.legs, u.seconds) for u in scoped] == [(1, 2, 186)]


def test_conference_report_names_parties_from_contacts(factory: sessionmaker[Session], tenant: Tenant) -> None:
    with factory() as s:
        seed(s, tenant)
        legs = conference_report(s, start=T0 - dt.timedelta(hours=1), end=T0 + dt.timedelta(hours=1), service_id=1)
        assert legs == [
            ConferenceLegUsage(
                1,
                "IC",
                "Weekly",
                "+15551230001",
                "Alice",
                "out",
                "subscriber",
                T0 - 5 * S,
                T0,
                T0 + 125 * S,
                125,
                3,
                "Europe/Paris",
            ),  # fmt: skip
            ConferenceLegUsage(
                1,
                "IC",
                "Weekly",
                "+14445550001",
                "Bob Smith",
                "out",
                "participant",
                T0 - 4 * S,
                T0,
                T0 + 61 * S,
                61,
                2,
                "Europe/Paris",
            ),  # fmt: skip
        ]
        room = conference_report(s, start=T0, end=T0 + dt.timedelta(hours=1), company_id=tenant.other_company_id)
        assert [(leg.caller, leg.name, leg.timezone) for leg in room] == [("+15550009999", "", "America/New_York")]


def test_minutes_per_day_in_a_zone(factory: sessionmaker[Session], tenant: Tenant) -> None:
    with factory() as s:
        seed(s, tenant)
        days = minutes_per_day(s, start=T0 - dt.timedelta(days=1), end=T0 + dt.timedelta(days=2),
                               tz_name="Europe/Paris")  # fmt: skip
        assert days == [
            DailyMinutes(dt.date(2026, 3, 28), "Acme", events=1, seconds=186, minutes=5),
            DailyMinutes(dt.date(2026, 3, 28), "Globex", events=1, seconds=30, minutes=1),
            DailyMinutes(dt.date(2026, 3, 29), "Acme", events=1, seconds=0, minutes=0),
        ]
        late = minutes_per_day(s, start=T0 - dt.timedelta(days=1), end=T0 + dt.timedelta(days=2), by="moderator",
                               tz_name="Pacific/Kiritimati", subscriber_id=tenant.subscriber_id)  # fmt: skip
        # UTC+14: 10:00 UTC on the 28th is already the 29th there
        assert [(d.day, d.key, d.minutes) for d in late] == [(dt.date(2026, 3, 29), "alice", 5),
                                                             (dt.date(2026, 3, 30), "alice", 0)]  # fmt: skip
