from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.config import Config, RoomConfig
from bridge.db.models import Company, DnisKind, DnisNumber, InstantConference, Room, Subscriber
from bridge.provisioning import (
    ProvisioningError,
    assign_ic,
    generate_pin,
    load_dnis,
    load_rooms,
    regenerate_pins,
    set_ic_members,
)


def make_subscribers(session: Session, count: int) -> list[Subscriber]:
    company = Company(name="Acme")
    subs = [Subscriber(company=company, name=f"S{i}", mobile=f"+1555123{i:04d}") for i in range(count)]
    session.add_all(subs)
    session.flush()
    return subs


def test_generate_pin_avoids_taken_and_finds_the_last_free_one() -> None:
    assert len(generate_pin(6, set())) == 6
    taken = {f"{n:04d}" for n in range(10_000) if n != 4321}
    assert generate_pin(4, taken) == "4321"
    with pytest.raises(ProvisioningError, match="no free 4-digit PIN"):
        generate_pin(4, taken | {"4321"})


def test_pins_are_unique_where_dial_in_needs_them(session: Session, config: Config) -> None:
    """User PINs unique across all ICs; activation PINs unique per DNIS; 4 digits to force collisions."""
    load_dnis(session, common="+15550100", pool=["+15550101", "+15550102"])
    cfg = dataclasses.replace(config, conference=dataclasses.replace(config.conference, pin_digits=4))
    subs = make_subscribers(session, 150)
    ics = [assign_ic(session, sub, slot, cfg) for sub in subs for slot in (1, 2)]
    user_pins = [ic.user_pin for ic in ics]
    assert len(set(user_pins)) == len(ics) == 300
    for slot in (1, 2):
        on_dnis = [ic.activation_pin for ic in ics if ic.slot == slot]
        assert len(set(on_dnis)) == 150
    assert all(ic.user_pin != ic.activation_pin for ic in ics)
    assert {ic.dnis.number for ic in ics if ic.slot == 2} == {"+15550102"}  # type: ignore[union-attr]


def test_assign_ic_is_idempotent_and_checks_the_slot(session: Session, config: Config) -> None:
    (sub,) = make_subscribers(session, 1)
    first = assign_ic(session, sub, 4, config)
    assert first.dnis is None  # no pool loaded yet
    assert assign_ic(session, sub, 4, config) is first
    load_dnis(session, pool=[f"+1555010{i}" for i in range(1, 6)])
    again = assign_ic(session, sub, 4, config)  # the pool grew: the IC gets its number, keeps its user PIN
    assert again is first and again.dnis is not None and again.dnis.number == "+15550104"
    with pytest.raises(ProvisioningError, match="slot 31 out of range 1-30"):
        assign_ic(session, sub, 31, config)
    with pytest.raises(ProvisioningError, match="slot 0 out of range"):
        assign_ic(session, sub, 0, config)


def test_regenerate_pins_changes_both(session: Session, config: Config) -> None:
    load_dnis(session, pool=["+15550101"])
    (sub,) = make_subscribers(session, 1)
    ic = assign_ic(session, sub, 1, config)
    old = (ic.activation_pin, ic.user_pin)
    regenerate_pins(session, ic, config)
    assert ic.activation_pin != old[0] and ic.user_pin != old[1]
    assert ic.activation_pin != ic.user_pin


def test_set_ic_members_limits_adhoc_numbers(session: Session, config: Config) -> None:
    (sub,) = make_subscribers(session, 1)
    ic = assign_ic(session, sub, 1, config)
    set_ic_members(session, ic, [f"+1555000{i:04d}" for i in range(10)], config)
    assert len(ic.members) == 10
    with pytest.raises(ProvisioningError, match="at most 10 ad hoc numbers, got 11"):
        set_ic_members(session, ic, [f"+1555000{i:04d}" for i in range(11)], config)
    assert len(session.scalars(select(InstantConference)).one().members) == 10


def test_load_dnis_appends_positions_and_skips_known(session: Session) -> None:
    assert load_dnis(session, common="+15550100", pool=["+15550101", "+15550102"]) == 3
    assert load_dnis(session, common="+15550100", pool=["+15550102-+15550103"]) == 1  # ranges expanded
    rows = session.scalars(select(DnisNumber).order_by(DnisNumber.id)).all()
    assert [(r.number, r.kind, r.position) for r in rows] == [
        ("+15550100", DnisKind.COMMON, 0),
        ("+15550101", DnisKind.POOL, 1),
        ("+15550102", DnisKind.POOL, 2),
        ("+15550103", DnisKind.POOL, 3),
    ]


def test_load_rooms(session: Session) -> None:
    rooms = [RoomConfig(number="1001", name="Demo", pin="1234"), RoomConfig(number="1002", name="Two")]
    assert load_rooms(session, rooms) == 2
    assert load_rooms(session, rooms) == 0
    assert [(r.number, r.name, r.pin) for r in session.scalars(select(Room).order_by(Room.number))] == [
        ("1001", "Demo", "1234"),
        ("1002", "Two", ""),
    ]
