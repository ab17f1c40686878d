from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bridge.cdr.writer import complete_run, write_cdr
from bridge.db.models import Cdr, Company, ConferenceRun, Leg, Room, ServiceType, Subscriber
from tests.cdr.cdr_world import T0, Tenant, add_run_with_legs


def test_write_cdr_denormalises_run_subscriber_company(factory: sessionmaker[Session], tenant: Tenant) -> None:
    with factory() as s:
        run, legs = add_run_with_legs(s, tenant)
        cdr = write_cdr(s, legs[1], now=T0 + dt.timedelta(minutes=4))
        s.commit()
        assert cdr.id is not None
        assert cdr.leg_id == legs[1].id
        assert (cdr.company_id, cdr.company_name) == (tenant.company_id, "Acme")
        assert (cdr.subscriber_id, cdr.moderator_name, cdr.moderator_phone) == (tenant.subscriber_id, "Alice",
                                                                                 "+15551230001")  # fmt: skip
        assert cdr.moderator_ident == "alice"  # the portal login
        assert (cdr.service_id, cdr.service_type, cdr.service_subject) == (run.id, "IC", "Weekly")
        assert cdr.service_started_at == T0
        assert (cdr.destination, cdr.cli, cdr.direction, cdr.role) == ("+14445550001", "+15551230001", "out",
                                                                         "participant")  # fmt: skip
        assert (cdr.port_id, cdr.codec, cdr.packet_loss) == ("1:2", "PCMU", 0.5)
        assert (cdr.call_id, cdr.cause) == ("call-1@test", "normal")
        assert cdr.joined_at == T0 + dt.timedelta(seconds=5)
        assert cdr.created_at == T0 + dt.timedelta(minutes=4)


def test_write_cdr_is_idempotent_per_leg(factory: sessionmaker[Session], tenant: Tenant) -> None:
    with factory() as s:
        _, legs = add_run_with_legs(s, tenant)
        first = write_cdr(s, legs[0])
        again = write_cdr(s, legs[0])
        s.commit()
        assert first.id == again.id
        assert s.scalar(select(func.count(Cdr.id))) == 1


def test_complete_run_stamps_completion_on_written_cdrs(factory: sessionmaker[Session], tenant: Tenant) -> None:
    with factory() as s:
        run, legs = add_run_with_legs(s, tenant, legs=3)
        for leg in legs:
            write_cdr(s, leg)
        run.ended_at = T0 + dt.timedelta(minutes=10)
        run.result = "completed"
        run.recorded = True
        assert complete_run(s, run) == 3
        s.commit()
        rows = s.scalars(select(Cdr)).all()
        assert {(c.service_completed_at, c.service_result, c.recording) for c in rows} == {
            (T0 + dt.timedelta(minutes=10), "completed", True)
        }


def test_dial_in_room_leg_without_moderator(factory: sessionmaker[Session], tenant: Tenant) -> None:
    with factory() as s:
        room = Room(number="1001", name="Demo", company_id=tenant.other_company_id)
        s.add(room)
        s.flush()
        run = ConferenceRun(service_type=ServiceType.ROOM, subject="Demo", room_id=room.id, started_at=T0)
        s.add(run)
        s.flush()
        leg = Leg(run_id=run.id, direction="in", role="participant", calling="+15550009999", called="1001",
                  dnis="1001", called_at=T0, joined_at=None, disconnected_at=None)  # fmt: skip
        s.add(leg)
        s.flush()
        cdr = write_cdr(s, leg, now=T0 + dt.timedelta(seconds=30))
        assert (cdr.company_name, cdr.moderator_ident, cdr.subscriber_id) == ("Globex", "", None)
        assert (cdr.destination, cdr.cli, cdr.dnis, cdr.service_type) == ("1001", "+15550009999", "1001", "room")
        assert cdr.disconnected_at == T0 + dt.timedelta(seconds=30)  # an unfinished leg ends when recorded


def test_cdr_survives_deletion_of_company_and_subscriber_names(factory: sessionmaker[Session], tenant: Tenant) -> None:
    with factory() as s:
        _, legs = add_run_with_legs(s, tenant)
        write_cdr(s, legs[0])
        s.commit()
        s.get(Subscriber, tenant.subscriber_id).name = "Renamed"  # type: ignore[union-attr]
        s.get(Company, tenant.company_id).name = "NewCo"  # type: ignore[union-attr]
        s.commit()
        cdr = s.scalars(select(Cdr)).one()
        assert (cdr.moderator_name, cdr.company_name) == ("Alice", "Acme")


def test_write_cdr_keeps_each_text_on_one_printable_line(factory: sessionmaker[Session], tenant: Tenant) -> None:
    with factory() as s:
        _, legs = add_run_with_legs(s, tenant)
        legs[0].call_id, legs[0].cause = "abc\x00def@host", "\x00normal"
        legs[0].calling = "+1555\r\n0001\x1f\x7f"
        cdr = write_cdr(s, legs[0], now=T0)
        s.commit()
        assert (cdr.call_id, cdr.cause, cdr.cli) == ("abcdef@host", "normal", "+1555  0001  ")
        assert cdr.destination == legs[0].called  # printable texts are left alone
