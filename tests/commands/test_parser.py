from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.commands import parser as p
from bridge.commands.errors import CommandError, ParseError


def parse(text: str) -> p.Command:
    return p.parse(text, default_country="US", max_slot=30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", p.Help()),
        ("?", p.Help()),
        ("??", p.Help(verbose=True)),
        ("?? gc", p.Help(topic="GC", verbose=True)),
        ("?uc", p.Help(topic="UC")),
        ("HeLp lc5", p.Help(topic="LC")),
        (
            "UC bob 5551230002 Bob.van_Dam Sales +Team -Old sales",
            p.CreateUser(
                nickname="bob",
                phone="+15551230002",
                first_name="Bob",
                last_name="van Dam",
                add_groups=("Sales", "Team"),
                remove_groups=("Old",),
            ),
        ),
        ("ue bob +15551230002 Bob", p.EditUser(nickname="bob", phone="+15551230002", first_name="Bob", last_name="")),
        ("UD bob", p.DeleteUser(target=p.Name("bob"))),
        ("UD 555 123 0002", p.DeleteUser(target=p.Phone("+15551230002"))),
        ("UL", p.LookupUsers(query="")),
        ("UL  bob  smith ", p.LookupUsers(query="bob smith")),
        (
            "GC Team bob 5551230002 bob BOB",
            p.DefineGroup(name="Team", members=(p.Name("bob"), p.Phone("+15551230002"))),
        ),
        ("GL", p.ListGroup(name=None)),
        ("GL Team", p.ListGroup(name="Team")),
        ("GD Team", p.DeleteGroup(name="Team")),
        ("IC Team 5551230002", p.LaunchAdHoc(targets=(p.Name("Team"), p.Phone("+15551230002")))),
        ("IC5551230002", None),  # a slot out of range, not a number
        ("IC12", p.LaunchIc(slot=12)),
        ("ic 12", p.LaunchIc(slot=12)),
        ("CC3 bob", p.DefineIc(slot=3, targets=(p.Name("bob"),))),
        ("cc 3 bob", p.DefineIc(slot=3, targets=(p.Name("bob"),))),
        ("LC", p.ListIc(slot=None)),
        ("LC30", p.ListIc(slot=30)),
        ("lc 1", p.ListIc(slot=1)),
        ("SB Team bob: hi: there", p.Blast(targets=(p.Name("Team"), p.Name("bob")), text="hi: there")),
        ("sb\nTeam\n:\nline1\nline2", p.Blast(targets=(p.Name("Team"),), text="line1\nline2")),
    ],
)
def test_parse(text: str, expected: p.Command | None) -> None:
    if expected is None:
        with pytest.raises(ParseError, match=r"IC: slot 5551\.\.\. out of range 1-30"):
            parse(text)
    else:
        assert parse(text) == expected


def test_command_words() -> None:
    words = {cls.word for cls in p.Command.__subclasses__()} | {p.EditUser.word}
    assert words == {"UC", "UE", "UD", "UL", "GC", "GL", "GD", "IC", "CC", "LC", "SB", "HELP"}


def test_parse_error_carries_the_command_word() -> None:
    with pytest.raises(ParseError) as info:
        parse("GD")
    assert info.value.word == "GD"
    assert info.value.reply == "GD: use GD <group>"
    assert isinstance(info.value, CommandError)


def test_names_cannot_be_confused_with_numbers_or_removals() -> None:
    assert p.is_name("a")
    assert p.is_name("Team_2.b-c")
    assert not p.is_name("2team")
    assert not p.is_name("-team")
    assert not p.is_name("a" * 41)


@pytest.mark.parametrize(
    "name", ["équipe", "Ñandú", "İstanbul", "Øresund_2", "Straße", "日本チーム", "नमस्ते", "ÉQUIPE-B.2"]
)
def test_any_unicode_letter_is_a_letter_in_names(name: str) -> None:
    """Issue 13 item 8: operators in France, Spain, Turkey... name groups and users in their language."""
    assert p.is_name(name)
    assert parse(f"GC {name} bob") == p.DefineGroup(name=name, members=(p.Name("bob"),))
    assert parse(f"UC {name} 5551230002 Bob {name}") == p.CreateUser(
        nickname=name, phone="+15551230002", first_name="Bob", last_name="", add_groups=(name,)
    )
    assert parse(f"IC {name}") == p.LaunchAdHoc(targets=(p.Name(name),))


@pytest.mark.parametrize("token", ["١team", "²team", "_team", ".team", "😀team", "team😀", "a b", "tab\tx", "é" * 41])
def test_the_rest_of_the_name_rule_holds_for_unicode(token: str) -> None:
    assert not p.is_name(token)


def test_a_decomposed_accent_is_the_same_name_as_a_composed_one() -> None:
    """Handsets may send "é" as "e" + U+0301; both must name the same group."""
    assert parse("GL e\u0301quipe") == p.ListGroup(name="\u00e9quipe")
    assert parse("GC \u00c9quipe e\u0301ric") == p.DefineGroup(name="\u00c9quipe", members=(p.Name("\u00e9ric"),))


def test_names_differing_only_in_case_are_one_name_in_any_script() -> None:
    assert parse("GC ÉQUIPE bob BOB Ñandú ñandú") == p.DefineGroup(
        name="ÉQUIPE", members=(p.Name("bob"), p.Name("Ñandú"))
    )


@given(st.text(max_size=200))
def test_parse_returns_a_command_or_raises_parse_error(text: str) -> None:
    try:
        command = parse(text)
    except ParseError as exc:
        assert exc.reply
        return
    assert isinstance(command, p.Command)
