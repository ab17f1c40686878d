"""The provisioning rules, tested once here; the SMS, portal and CLI tests only check that they reach them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from bridge.config import Config, RoomConfig
from bridge.db.models import (
    Account,
    Company,
    Contact,
    DnisKind,
    DnisNumber,
    Group,
    IcMember,
    InstantConference,
    Role,
    Room,
    Subscriber,
    SubscriberStatus,
)
from bridge.provisioning import (
    EXISTS,
    LIMIT,
    ProvisioningError,
    add_room,
    assign_ic,
    check_adhoc,
    create_ic,
    delete_contact,
    delete_group,
    delete_room,
    find_company,
    generate_pin,
    is_name,
    load_dnis,
    load_rooms,
    name_key,
    regenerate_pins,
    save_account,
    save_company,
    save_contact,
    save_group,
    save_subscriber,
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


# --- names, contacts, groups ---------------------------------------------------------------------


GROUP_CLASH = "'team' is a group name; pick another nickname"


def contact(session: Session, sub: Subscriber, nick: str, phone: str = "5551239999", **kw: Any) -> Contact:
    row, _changes = save_contact(session, sub.id, nickname=nick, phone=phone, default_country="US", **kw)
    return row


def refusal(call: Callable[[], object]) -> ProvisioningError:
    with pytest.raises(ProvisioningError) as caught:
        call()
    return caught.value


def test_name_rule_is_unicode_aware_and_keys_fold_case() -> None:
    assert all(is_name(n) for n in ("bob", "Ñandú", "équipe", "İstanbul", "a.b-c_9", "हिन्दी"))
    assert not any(is_name(n) for n in ("", "9bob", "_x", "x y", "x*y", "a" * 41))
    assert name_key("ÉQUIPE") == name_key("équipe") and name_key("STRASSE") == name_key("straße")


def test_contact_and_group_names_are_one_namespace(session: Session) -> None:
    """Today's disagreement settled on the SMS rule: a contact may not take a group's name, nor the reverse."""
    (sub,) = make_subscribers(session, 1)
    save_group(session, sub.id, name="Team", members=[])
    contact(session, sub, "bob")
    clash = refusal(lambda: contact(session, sub, "team"))
    assert (clash.message, clash.field, clash.code) == (
        "'team' is a group name; pick another nickname",
        "nickname",
        EXISTS,
    )
    group = refusal(lambda: save_group(session, sub.id, name="BOB", members=[]))
    assert (group.message, group.field) == ("'BOB' is a user's nickname; pick another group name", "name")
    assert refusal(lambda: contact(session, sub, "BOB")).message == "nickname 'BOB' exists"
    assert refusal(lambda: save_group(session, sub.id, name="TEAM", members=[])).message == "group 'TEAM' exists"
    joined = refusal(lambda: contact(session, sub, "ann", join=["Bob"]))
    assert joined.message == "'Bob' is a user's nickname, not a group"
    assert refusal(lambda: contact(session, sub, "9x")).message == (
        "'9x' is not a valid nickname (a letter first, then letters, digits, _ . -; max 40)"
    )
    assert refusal(lambda: contact(session, sub, "eve", phone="12")).field == "phone"
    assert {c.nickname for c in session.scalars(select(Contact))} == {"bob"}  # refusals leave nothing behind


def test_names_match_in_any_script(session: Session) -> None:
    (sub,) = make_subscribers(session, 1)
    contact(session, sub, "Ñandú", join=["équipe"])
    assert refusal(lambda: contact(session, sub, "ÑANDÚ")).code == EXISTS
    assert refusal(lambda: contact(session, sub, "ÉQUIPE")).message == "'ÉQUIPE' is a group name; pick another nickname"


def test_contact_joins_and_leaves_groups_and_keeps_its_name_on_edit(session: Session) -> None:
    (sub,) = make_subscribers(session, 1)
    bob, changes = save_contact(
        session, sub.id, nickname="bob", phone="5551230002", default_country="US", join=["Sales"]
    )
    assert [(g.name, new) for g, new in changes.joined] == [("Sales", True)]
    assert bob.phone == "+15551230002"
    sales = session.scalars(select(Group)).one()
    # an old clash (made before the rule) does not block editing the rest of the contact
    session.add(Group(subscriber_id=sub.id, name="BOB"))
    session.flush()
    _same, edit = save_contact(
        session, sub.id, nickname="bob", phone="5551230009", default_country="US", contact=bob, leave=["sales"]
    )
    assert bob.phone == "+15551230009" and edit.left == [sales] and sales.members == []
    assert refusal(lambda: contact(session, sub, "ann", leave=["nope"])).message == "no such group 'nope'"


def test_groups_never_contain_themselves(session: Session) -> None:
    (sub,) = make_subscribers(session, 1)
    a = save_group(session, sub.id, name="A", members=["+15551230002"])
    b = save_group(session, sub.id, name="B", members=[a])
    assert refusal(lambda: save_group(session, sub.id, name="A", members=[a], group=a)).message == (
        "group 'A' cannot contain itself"
    )
    assert refusal(lambda: save_group(session, sub.id, name="A", members=[b], group=a)).message == (
        "'B' already contains 'A'; that would make a loop"
    )


def test_deleting_removes_every_membership(session: Session, config: Config) -> None:
    (sub,) = make_subscribers(session, 1)
    bob = contact(session, sub, "bob")
    team = save_group(session, sub.id, name="Team", members=[bob])
    outer = save_group(session, sub.id, name="Outer", members=[team])
    ic = assign_ic(session, sub, 3, config)
    set_ic_members(session, ic, [bob, team], config)
    assert delete_contact(session, bob) == ["Team", "IC3"]
    assert delete_group(session, team) == ["Outer", "IC3"]
    assert outer.members == [] and session.scalars(select(IcMember)).all() == []


# --- Instant Conferences ----------------------------------------------------------------------------


def test_ad_hoc_limit_and_first_free_slot(session: Session, config: Config) -> None:
    check_adhoc(10, config)
    assert refusal(lambda: check_adhoc(11, config)).message == "at most 10 ad hoc numbers, got 11"
    (sub,) = make_subscribers(session, 1)
    assign_ic(session, sub, 1, config)
    assert create_ic(session, sub, config, " Board ").slot == 2
    assert refusal(lambda: create_ic(session, sub, config, " ")).field == "name"
    small = dataclasses.replace(config, conference=dataclasses.replace(config.conference, max_ics_per_subscriber=2))
    full = refusal(lambda: create_ic(session, sub, small, "x"))
    assert (full.message, full.code) == ("all 2 Instant Conference slots are in use", LIMIT)


# --- rooms ------------------------------------------------------------------------------------------


def test_room_rules(session: Session, config: Config) -> None:
    room = add_room(session, config, number="2001", name="Board", pin="1234", moderator_pin="99")
    assert room.id is not None
    cases = {
        "2001": "room number 2001 is taken by room 2001 'Board'",
        "+15550100": "room number +15550100 clashes with the DNIS number +15550100",
        "12a": "'12a' is not a number (digits, optional leading +)",
    }
    for number, message in cases.items():
        assert refusal(lambda n=number: add_room(session, config, number=n, name="x")).message == message
    same = refusal(lambda: add_room(session, config, number="2002", name="x", pin="1", moderator_pin="1"))
    assert same.field == "moderator_pin"
    assert refusal(lambda: add_room(session, config, number="2002", name="x", pin="12345678")).field == "pin"
    assert delete_room(session, "2001") is room
    assert refusal(lambda: delete_room(session, "2001")).message == "no room with number '2001'"


# --- companies, subscribers, logins -----------------------------------------------------------------


def test_company_names_are_unique_by_name_key(session: Session) -> None:
    acme = save_company(session, name=" Acme ", timezone="Europe/Paris")
    assert (acme.name, acme.timezone) == ("Acme", "Europe/Paris")
    assert refusal(lambda: save_company(session, name="ACME")).message == "company 'ACME' exists"
    assert save_company(session, name="ACME", company=acme) is acme  # renaming itself is fine
    assert refusal(lambda: save_company(session, name="B", timezone="Mars/Olympus")).field == "timezone"
    assert find_company(session, "acme") is acme
    assert refusal(lambda: find_company(session, "Nope")).message == "no company named 'Nope'"


def test_subscriber_with_portal_login(session: Session) -> None:
    company = save_company(session, name="Acme")
    args: dict[str, Any] = {"company_id": company.id, "name": "Alice", "default_country": "US"}
    sub, login = save_subscriber(session, mobile="(555) 123-0001", username="alice", password="alice-pass", **args)
    assert sub.mobile == "+15551230001" and login is not None and login.subscriber_id == sub.id
    assert login.role is Role.SUBSCRIBER and login.password_hash != "alice-pass"
    assert check_password_hash(login.password_hash, "alice-pass")
    dup = refusal(lambda: save_subscriber(session, mobile="+15551230001", **args))
    assert (dup.message, dup.field) == ("mobile +15551230001 is already registered", "mobile")
    taken = refusal(lambda: save_subscriber(session, mobile="5551230002", username="alice", password="x" * 9, **args))
    assert taken.message == "username 'alice' is taken"
    short = refusal(lambda: save_subscriber(session, mobile="5551230002", username="bo", password="short", **args))
    assert short.message == "the password needs at least 8 characters"
    nopw = refusal(lambda: save_subscriber(session, mobile="5551230002", username="bo", **args))
    assert nopw.message == "a new login needs a password"
    old_hash = login.password_hash
    save_subscriber(session, mobile="+15551230001", status=SubscriberStatus.SUSPENDED, subscriber=sub, **args)
    assert not login.active and login.password_hash == old_hash  # the login follows the subscriber


def test_staff_accounts(session: Session) -> None:
    company = save_company(session, name="Acme")
    op = save_account(session, username="op", role=Role.OPERATOR, password="op-password")
    assert op.company_id is None and check_password_hash(op.password_hash, "op-password")
    assert refusal(lambda: save_account(session, username="adm", role=Role.COMPANY_ADMIN, password="x" * 8)).field == (
        "company"
    )
    assert refusal(lambda: save_account(session, username="op", role=Role.OPERATOR, password="x" * 8)).code == EXISTS
    admin = save_account(session, username="adm", role=Role.COMPANY_ADMIN, password="x" * 8, company_id=company.id)
    assert admin.company_id == company.id
    assert len(session.scalars(select(Account)).all()) == 2
