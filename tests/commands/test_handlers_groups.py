from __future__ import annotations

import itertools
from collections.abc import Callable

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from bridge.commands import CommandResult
from bridge.commands.handlers import MAX_GROUP_DEPTH, flatten
from bridge.commands.help import fits_one_sms
from bridge.db.models import Group, GroupMember, IcMember, InstantConference, Subscriber

Sms = Callable[..., CommandResult]
MOBILE = "+15551230001"


def group(session: Session, name: str) -> Group:
    return session.scalars(select(Group).where(Group.name == name)).one()


def setup_users(sms: Sms) -> None:
    sms("UC bob 5551230002 Bob")
    sms("UC ann 5551230003 Ann")
    sms("UC carl 5551230004 Carl")


def test_gc_creates_a_group_of_users_numbers_and_groups(sms: Sms, session: Session) -> None:
    setup_users(sms)
    sms("GC Inner carl")
    result = sms("gc Team bob ANN 5551230009 inner bob")
    assert result.command == "GC"
    assert result.reply == "GC: group Team created: bob, ann, +15551230009, Inner(group)"
    team = group(session, "Team")
    assert [(m.contact.nickname if m.contact else None, m.phone, m.member_group_id) for m in team.members] == [
        ("bob", None, None),
        ("ann", None, None),
        (None, "+15551230009", None),
        (None, None, group(session, "Inner").id),
    ]
    assert flatten([team]) == ["+15551230002", "+15551230003", "+15551230009", "+15551230004"]


def test_gc_replaces_members(sms: Sms, session: Session) -> None:
    setup_users(sms)
    sms("GC Team bob ann")
    result = sms("GC team carl")
    assert result.reply == "GC: group Team replaced: carl"
    assert [m.contact.nickname for m in group(session, "Team").members if m.contact] == ["carl"]
    assert len(session.scalars(select(GroupMember)).all()) == 1  # old rows deleted, not orphaned


def test_gc_errors(sms: Sms, session: Session) -> None:
    setup_users(sms)
    sms("GC A bob")
    sms("GC B A")
    cases = {
        "GC": "GC: use GC <group> <nick|phone|group> ...",
        "GC Team": "GC: use GC <group> <nick|phone|group> ...",
        "GC Team zed": "GC: no such user or group 'zed'",
        "GC Team bob 12": "GC: '12' is not a possible phone number",
        "GC 1Team bob": "GC: '1Team' is not a valid group name (a letter first, then letters, digits, _ . -; max 40)",
        "GC bob ann": "GC: 'bob' is a user's nickname; pick another group name",
        "GC A a": "GC: group 'A' cannot contain itself",
        "GC A B": "GC: 'B' already contains 'A'; that would make a loop",
        "GC Team bob x*y": "GC: 'x*y' is not a nickname, group or phone number",
    }
    for text, reply in cases.items():
        result = sms(text)
        assert (text, result.reply, result.command) == (text, reply, "GC")
        assert fits_one_sms(result.reply)
    assert [m.contact.nickname for m in group(session, "A").members if m.contact] == ["bob"]
    assert session.scalars(select(Group).where(Group.name == "Team")).first() is None


def test_flatten_survives_cycles_made_elsewhere(sms: Sms, session: Session) -> None:
    """The portal might create a loop the SMS language refuses; flattening must still terminate."""
    setup_users(sms)
    sms("GC A bob")
    sms("GC B ann A")
    a = group(session, "A")
    a.members.append(GroupMember(position=5, member_group_id=group(session, "B").id))
    session.flush()
    assert flatten([a]) == ["+15551230002", "+15551230003"]
    result = sms("IC A")
    assert result.actions[0].numbers == ("+15551230001", "+15551230002", "+15551230003")  # type: ignore[attr-defined]


def test_gl_lists_a_group_and_all_groups(sms: Sms) -> None:
    assert sms("GL").reply == "GL: you have no groups yet - create one with GC <group> <nick/phone/group> ..."
    setup_users(sms)
    sms("GC Team bob ann 5551230009")
    sms("GC all Team carl")
    result = sms("gl team")
    assert result.command == "GL"
    assert result.reply == "GL Team (3): bob +15551230002, ann +15551230003, +15551230009"
    assert sms("GL all").reply == "GL all (2): Team(group), carl +15551230004"
    assert sms("GL").reply == "GL: all(2), Team(3)"
    assert sms("GL zed").reply == "GL: no such group 'zed'"
    assert sms("GL a b").reply == "GL: use GL <group>, or GL alone for all groups"
    sms("UD carl")
    sms("GC Solo bob")
    sms("UD bob")
    assert sms("GL Solo").reply == "GL: Solo is empty"


def test_gd_deletes_group_and_references(sms: Sms, session: Session) -> None:
    setup_users(sms)
    sms("GC Team bob ann")
    sms("GC All Team carl")
    sms("CC4 Team carl")
    result = sms("GD team")
    assert result.command == "GD"
    assert result.reply == "GD: deleted group Team (its users stay); removed from All, IC4"
    assert [m.contact.nickname for m in group(session, "All").members if m.contact] == ["carl"]
    assert len(group(session, "All").members) == 1
    assert sms("LC4").reply.startswith("IC4: carl.")
    assert sms("UL").reply.startswith("UL: 3 found")
    assert sms("GD Team").reply == "GD: no such group 'Team'"
    assert sms("GD").reply == "GD: use GD <group>"


def nest(session: Session, subscriber_id: int, levels: int) -> Group:
    """``g0`` holds bob's number, ``g1`` holds ``g0``, ... : returns the outermost group."""
    groups = [Group(subscriber_id=subscriber_id, name=f"g{i}") for i in range(levels)]
    session.add_all(groups)
    session.flush()
    session.add(GroupMember(group_id=groups[0].id, position=0, phone="+15551230002"))
    session.add_all(
        GroupMember(group_id=outer.id, position=0, member_group_id=inner.id)
        for inner, outer in itertools.pairwise(groups)
    )
    session.flush()
    session.expire_all()
    return groups[-1]


def test_deep_nesting_is_refused_with_the_limit_not_a_recursion_error(
    sms: Sms, session: Session, subscriber: Subscriber
) -> None:
    """Issue 13 item 10: 1,200 levels of groups made elsewhere (portal, API) used to raise RecursionError."""
    top = nest(session, subscriber.id, 1200)
    limit = f"groups nested more than {MAX_GROUP_DEPTH} deep in 'g1199' (at most {MAX_GROUP_DEPTH} levels)"
    assert sms("IC g1199").reply == "IC: " + limit
    assert sms("CC1 g1199").reply == "CC1: " + limit
    assert sms("SB g1199 : hello").reply == "SB: " + limit
    for text in ("IC g1199", "CC1 g1199", "SB g1199 : hello"):
        assert sms(text).actions == ()
    ic = InstantConference(subscriber_id=subscriber.id, slot=2, activation_pin="1", user_pin="2")
    ic.members = [IcMember(position=0, group_id=top.id)]
    session.add(ic)
    session.flush()
    assert sms("IC2").reply == "IC2: " + limit
    assert sms("LC2").reply.startswith("LC2: " + limit)
    # At the limit it still works.
    nest_at_limit = session.get(Group, top.id - (1200 - MAX_GROUP_DEPTH))
    assert nest_at_limit is not None and nest_at_limit.name == f"g{MAX_GROUP_DEPTH - 1}"
    assert sms(f"IC g{MAX_GROUP_DEPTH - 1}").actions[0].numbers == (MOBILE, "+15551230002")  # type: ignore[attr-defined]


def test_gl_of_all_groups_takes_a_bounded_number_of_queries(sms: Sms, session: Session, subscriber: Subscriber) -> None:
    """Issue 13 item 10: ``GL`` with 1,233 groups loaded each group's members (one query per group)."""
    nest(session, subscriber.id, 1233)
    statements: list[str] = []
    engine = session.get_bind()

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        reply = sms("GL").reply
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert reply.startswith("GL: g0(1), g1(1), g10(1), g100(1), g1000(1), ")
    assert reply.endswith(" more")
    assert len(statements) <= 4  # the sender, the groups with their member counts; never one per group


def test_unicode_names_match_case_insensitively(sms: Sms) -> None:
    """Issue 13 item 8: SQL ``lower()`` folds only ASCII in SQLite; "ÉQUIPE" must find "équipe"."""
    assert sms("UC Ñandú 5551230002 Ñandú équipe").reply == "UC: added Ñandú +15551230002 Ñandú; groups +équipe(new)"
    assert sms("GL ÉQUIPE").reply == "GL équipe (1): Ñandú +15551230002"
    assert sms("GC İstanbul ñandú équipe").reply == "GC: group İstanbul created: Ñandú, équipe(group)"
    assert sms("IC İSTANBUL").actions[0].numbers == (MOBILE, "+15551230002")  # type: ignore[attr-defined]
    # Quoted in printable GSM-7 (item 9): Ñ is in GSM 03.38, Ú is not and is shown as its base letter.
    assert sms("UC ÑANDÚ 5551230003 X").reply == "UC: nickname 'ÑANDU' exists - use UE to edit"
    assert sms("GC ÑANDÚ bob").reply == "GC: 'ÑANDU' is a user's nickname; pick another group name"
    sms("GC zed ñandú")
    sms("GC Alpha ñandú")
    assert sms("GL").reply == "GL: Alpha(1), équipe(1), İstanbul(2), zed(1)"
    assert sms("GD Équipe").reply.startswith("GD: deleted group équipe")
