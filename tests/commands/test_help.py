"""What replies cost: an error quoting the sender's token stays one GSM-7 SMS (issue 13 item 9).

A single character outside GSM 03.38 (an emoji) switches a whole SMS to UCS-2, 70 characters a part, and
a control character echoed back can garble the handset's display: quoted tokens are rendered short,
printable and GSM-7-safe. ``??`` fits three parts. Part counts come from the SMPP layer's own encoder.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.commands import CommandResult
from bridge.commands import parser as p
from bridge.commands.errors import ParseError
from bridge.commands.help import quote
from bridge.smpp.concat import encode_message
from bridge.smpp.constants import DC_DEFAULT

Sms = Callable[..., CommandResult]
EMOJI = "\U0001f600"


def parts(text: str) -> int:
    return len(encode_message(text, ref=1).parts)


def gsm7(text: str) -> bool:
    return encode_message(text, ref=1).data_coding == DC_DEFAULT


def printable(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


@pytest.mark.parametrize(
    "text",
    [
        f"GC {EMOJI}team bob",
        f"GC team{EMOJI} bob",
        f"UC bob 5551230002 Bob {EMOJI}grp",
        f"IC bob{EMOJI} carl",
        f"SB {EMOJI} : hello",
        f"UD z\x07\x1b[2J{EMOJI}",
        f"UL {EMOJI}{EMOJI}",
        f"{EMOJI}{EMOJI} hello",
        "X\x00Y\x1b",
        f"? {EMOJI}",
        "? \x07BEL",
        "GL \u202eevil",
        "IC\u0663\u0663",
        "GC " + EMOJI * 30 + " bob",
    ],
)
def test_an_error_quoting_an_unprintable_token_is_one_gsm7_sms(sms: Sms, text: str) -> None:
    reply = sms(text).reply
    assert gsm7(reply), reply
    assert parts(reply) == 1, reply
    assert printable(reply), repr(reply)


def test_quote_renders_letters_as_close_as_gsm7_allows() -> None:
    assert quote("équipe") == "'équipe'"  # é is in GSM 03.38: kept
    assert quote("İstanbul") == "'Istanbul'"  # İ is not: its base letter
    assert quote(f"a{EMOJI}\x07b") == "'a??b'"
    assert quote("x" * 40) == "'" + "x" * 17 + "...'"
    assert quote(EMOJI * 40) == "'" + "?" * 17 + "...'"


def test_a_nickname_not_found_is_quoted_safely(sms: Sms) -> None:
    assert sms("UD İpek").reply == "UD: no such user 'Ipek'"


@given(st.text(max_size=120))
def test_every_parse_error_is_one_printable_gsm7_sms(text: str) -> None:
    try:
        p.parse(text, default_country="US", max_slot=30)
    except ParseError as exc:
        assert gsm7(exc.reply) and parts(exc.reply) == 1 and printable(exc.reply), repr(exc.reply)


def test_full_help_fits_three_parts_and_points_to_more(sms: Sms) -> None:
    reply = sms("??").reply
    assert gsm7(reply)
    assert parts(reply) <= 3, parts(reply)
    assert "? <cmd>" in reply
    assert "portal" in reply and "Help" in reply
    for word in ("UC", "UE", "UD", "UL", "GC", "GL", "GD", "IC", "CCx", "LCx", "SB"):
        assert word in reply
    for word in ("UC", "CC", "SB"):
        assert parts(sms(f"? {word}").reply) == 1


def test_a_list_of_unicode_names_still_fits_one_sms(sms: Sms) -> None:
    """A name outside GSM-7 makes a reply UCS-2 (70 characters): ``LCx`` must still be one SMS."""
    names = [f"İpek{i}" for i in range(12)]
    for i, name in enumerate(names):
        sms(f"UC {name} 55512320{i:02d} Ipek")
    sms("UC 日本 5551232100 Nihon")
    sms("GC ekip " + " ".join(names))
    sms("CC1 ekip")
    reply = sms("LC1").reply
    assert parts(reply) == 1, reply
    assert reply.startswith("IC1: Ipek0, Ipek1, ") and ", Ipek11. Call " in reply  # base letters: GSM-7
    sms("CC2 İpek0")
    assert sms("LC2").reply.startswith("IC2: İpek0. Call ")  # fits as written: kept as written
    sms("CC3 ekip 日本")
    reply = sms("LC3").reply
    assert parts(reply) == 1, reply
    assert reply.startswith("IC3: +13 more. Call ")  # no base letters for 日本: as written, so only the count
