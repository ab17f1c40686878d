from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.commands import CommandResult
from bridge.commands.help import fits_one_sms
from bridge.db.models import Contact, Group, Subscriber

Sms = Callable[..., CommandResult]


def contacts(session: Session) -> dict[str, Contact]:
    return {c.nickname: c for c in session.scalars(select(Contact))}


def group_nicks(session: Session, name: str) -> list[str]:
    group = session.scalars(select(Group).where(Group.name == name)).one()
    return [gm.contact.nickname for gm in group.members if gm.contact]


def test_uc_creates_a_user(sms: Sms, session: Session, subscriber: Subscriber) -> None:
    result = sms("UC bob 555-123-0002 Bob.Smith")
    assert result.command == "UC"
    assert result.subscriber_id == subscriber.id
    assert result.actions == ()
    assert result.reply == "UC: added bob +15551230002 Bob Smith"
    bob = contacts(session)["bob"]
    assert (bob.phone, bob.first_name, bob.last_name, bob.subscriber_id) == (
        "+15551230002",
        "Bob",
        "Smith",
        subscriber.id,
    )


def test_uc_command_word_is_case_insensitive_and_name_parts_optional(sms: Sms, session: Session) -> None:
    assert sms("uc ann 5551230003 Ann").reply == "UC: added ann +15551230003 Ann"
    assert sms("Uc mary 5551230004 Mary_Ann.Lee").reply == "UC: added mary +15551230004 Mary Ann Lee"
    assert contacts(session)["ann"].last_name == ""


def test_uc_adds_to_existing_and_new_groups(sms: Sms, session: Session) -> None:
    sms("GC Sales 5551230009")
    result = sms("UC bob 5551230002 Bob sales Mkting")
    assert result.reply == "UC: added bob +15551230002 Bob; groups +Sales, +Mkting(new)"
    assert group_nicks(session, "Sales") == ["bob"]
    assert group_nicks(session, "Mkting") == ["bob"]


def test_uc_existing_nickname_is_refused_case_insensitively(sms: Sms, session: Session) -> None:
    sms("UC bob 5551230002 Bob")
    result = sms("UC BOB 5551230003 Robert")
    assert result.reply == "UC: nickname 'BOB' exists - use UE to edit"
    assert result.command == "UC"
    assert contacts(session)["bob"].phone == "+15551230002"


def test_uc_errors(sms: Sms, session: Session) -> None:
    sms("GC Team 5551230009")
    sms("UC ann 5551230003 Ann")
    cases = {
        "UC bob": "UC: use UC <nick> <phone> <first>[.<last>] [[-]group ...]",
        "UC bob 5551230002": "UC: use UC <nick> <phone> <first>[.<last>] [[-]group ...]",
        "UC bob xyz Bob": "UC: 'xyz' is not a phone number",
        "UC bob 2663 Bob": "UC: '2663' is not a possible phone number",
        "UC 9bob 5551230002 Bob": "UC: '9bob' is not a valid nickname"
        " (a letter first, then letters, digits, _ . -; max 40)",
        "UC bob 5551230002 .Smith": "UC: give a first name: UC <nick> <phone> <first>[.<last>]",
        "UC bob 5551230002 Bob -Nope": "UC: no such group 'Nope'",
        "UC bob 5551230002 Bob Team -team": "UC: group 'team' is both added and removed",
        "UC team 5551230002 Bob": "UC: 'team' is a group name; pick another nickname",
        "UC bob 5551230002 Bob ann": "UC: 'ann' is a user's nickname, not a group",
        "UC bob 5551230002 Bob bob": "UC: 'bob' is a user's nickname, not a group",
        "UC bob 5551230002 " + "x" * 61: "UC: names are at most 60 characters",
    }
    for text, reply in cases.items():
        result = sms(text)
        assert (text, result.reply) == (text, reply)
        assert result.command == "UC"
        assert fits_one_sms(result.reply)
    assert set(contacts(session)) == {"ann"}  # nothing half-created


def test_ue_edits_phone_name_and_groups(sms: Sms, session: Session) -> None:
    sms("UC bob 5551230002 Bob.Smith Sales Old")
    result = sms("ue BOB 5551230009 Robert.Smith -old Team")
    assert result.command == "UE"
    assert result.reply == "UE: updated bob +15551230009 Robert Smith; groups +Team(new), -Old"
    bob = contacts(session)["bob"]
    assert (bob.phone, bob.first_name) == ("+15551230009", "Robert")
    assert group_nicks(session, "Old") == []
    assert group_nicks(session, "Sales") == ["bob"]
    assert group_nicks(session, "Team") == ["bob"]
    # adding to a group it is already in does not duplicate the membership
    sms("UE bob 5551230009 Robert.Smith Sales")
    assert group_nicks(session, "Sales") == ["bob"]


def test_ue_unknown_user(sms: Sms) -> None:
    result = sms("UE zed 5551230002 Zed")
    assert result.reply == "UE: no such user 'zed' - use UC to add"
    assert result.command == "UE"


def test_ud_by_nickname_removes_from_groups_and_ics(sms: Sms, session: Session) -> None:
    sms("UC bob 5551230002 Bob Team")
    sms("UC ann 5551230003 Ann Team")
    sms("CC2 bob ann")
    result = sms("UD Bob")
    assert result.command == "UD"
    assert result.reply == "UD: deleted bob +15551230002; removed from Team, IC2"
    assert set(contacts(session)) == {"ann"}
    assert group_nicks(session, "Team") == ["ann"]
    assert "IC2: ann." in sms("LC2").reply


def test_ud_by_phone(sms: Sms, session: Session) -> None:
    sms("UC bob 5551230002 Bob")
    assert sms("UD +1 (555) 123-0002").reply == "UD: deleted bob +15551230002"
    assert contacts(session) == {}


def test_ud_errors(sms: Sms) -> None:
    sms("UC bob 5551230002 Bob")
    sms("UC rob 5551230002 Rob")
    assert sms("UD").reply == "UD: use UD <nick> or UD <phone>"
    assert sms("UD bob rob").reply == "UD: use UD <nick> or UD <phone>"
    assert sms("UD zed").reply == "UD: no such user 'zed'"
    assert sms("UD 5551230007").reply == "UD: no user has number +15551230007"
    assert sms("UD 5551230002").reply == "UD: 2 users have +15551230002: bob, rob - use UD <nick>"
    assert sms("UD @@").reply == "UD: '@@' is not a nickname, group or phone number"


def test_ul_searches_nick_name_and_number(sms: Sms) -> None:
    assert sms("UL").reply == "UL: you have no users yet - add one with UC <nick> <phone> <first>.<last>"
    sms("UC bob 5551230002 Bob.Smith")
    sms("UC ann 5551230003 Ann.Smithers")
    sms("UC carl 4155550199 Carl")
    assert sms("UL").reply == (
        "UL: 3 found: ann +15551230003 Ann Smithers; bob +15551230002 Bob Smith; carl +14155550199 Carl"
    )
    assert sms("ul SMITH").reply == "UL: 2 found: ann +15551230003 Ann Smithers; bob +15551230002 Bob Smith"
    assert sms("UL 415").reply == "UL: 1 found: carl +14155550199 Carl"
    assert sms("UL bob smith").reply == "UL: 1 found: bob +15551230002 Bob Smith"
    assert sms("UL zed").reply == "UL: no user matches 'zed'"
    assert sms("UL zed").command == "UL"


def test_ul_long_result_is_cut(sms: Sms) -> None:
    for i in range(40):
        sms(f"UC user{i:02d} 55512300{i:02d} First.Last")
    reply = sms("UL user").reply
    assert reply.startswith("UL: 40 found: user00 +15551230000 First Last; ")
    assert reply.endswith(" more")
    assert len(reply) <= 306


def test_uc_reaches_the_provisioning_core(sms: Sms, session: Session) -> None:
    """A contact named like a group is refused in the core's words (the portal and the CLI give the same)."""
    sms("GC Team 5551230009")
    result = sms("UC team 5551230002 Bob")
    assert result.reply == "UC: 'team' is a group name; pick another nickname"
    assert contacts(session) == {}
