from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.commands import CommandResult, LaunchConference, SmsBlast, ic_dial_list
from bridge.commands.help import fits_one_sms
from bridge.config import Config
from bridge.db.models import ConferenceRun, DnisNumber, InstantConference, Leg, ServiceType, Subscriber

Sms = Callable[..., CommandResult]
ME = "+15551230001"


def setup_users(sms: Sms) -> None:
    sms("UC bob 5551230002 Bob Team")
    sms("UC ann 5551230003 Ann Team")
    sms("UC carl 5551230004 Carl")


def ic(session: Session, slot: int) -> InstantConference:
    return session.scalars(select(InstantConference).where(InstantConference.slot == slot)).one()


def test_ic_adhoc_launch_flattens_dedups_subscriber_first(sms: Sms, subscriber: Subscriber) -> None:
    setup_users(sms)
    result = sms("ic carl Team +15551230002 5551230001 5551230009")
    assert result.command == "IC"
    assert result.actions == (
        LaunchConference(
            subscriber_id=subscriber.id,
            numbers=(ME, "+15551230004", "+15551230002", "+15551230003", "+15551230009"),
            ic_id=None,
        ),
    )
    assert result.reply == "IC: calling you and 4 others: carl, Team(group), +15551230002, +15551230001, +15551230009"


def test_ic_adhoc_errors(sms: Sms, config: Config) -> None:
    setup_users(sms)
    assert sms("IC").reply == "IC: use IC <nick|phone|group> ... or ICx to launch IC x"
    assert sms("IC zed").reply == "IC: no such user or group 'zed'"
    assert sms("IC 5551230001").reply == "IC: nobody to call besides you"
    assert sms("IC 3 bob").reply == "IC: use IC3 alone to launch IC 3, or IC <nick|phone|group> ..."
    many = " ".join(f"55512310{i:02d}" for i in range(11))
    assert sms(f"IC {many}").reply == "IC: at most 10 ad hoc numbers, got 11"
    small = dataclasses.replace(config, conference=dataclasses.replace(config.conference, max_participants=3))
    assert sms("IC Team carl", cfg=small).reply == "IC: 4 people exceed the limit of 3 per conference"
    for text in ("IC", "IC zed", "IC 5551230001", f"IC {many}"):
        result = sms(text)
        assert result.actions == () and result.command == "IC"


def test_cc_creates_ic_with_pool_dnis_and_pins(sms: Sms, session: Session, config: Config) -> None:
    setup_users(sms)
    result = sms("cc3 Team carl 5551230009")
    assert result.command == "CC"
    conf = ic(session, 3)
    assert conf.dnis is not None and conf.dnis.number == "+15550103"  # pool position 3
    assert len(conf.activation_pin) == config.conference.pin_digits and conf.activation_pin.isdigit()
    assert len(conf.user_pin) == config.conference.pin_digits and conf.user_pin.isdigit()
    assert conf.user_pin != conf.activation_pin
    assert result.reply == (
        f"CC3: IC3 created: Team(group), carl, +15551230009. Launch: IC3 or call +15550103 PIN {conf.activation_pin}."
        f" Rejoin: +15550100 PIN {conf.user_pin}"
    )
    assert fits_one_sms(result.reply)
    assert [(m.group_id is not None, m.contact_id is not None, m.phone) for m in conf.members] == [
        (True, False, None),
        (False, True, None),
        (False, False, "+15551230009"),
    ]


def test_cc_redefine_keeps_pins_and_replaces_members(sms: Sms, session: Session) -> None:
    setup_users(sms)
    sms("CC 2 bob")
    pins = (ic(session, 2).activation_pin, ic(session, 2).user_pin)
    result = sms("CC2 ann carl")
    assert result.reply.startswith("CC2: IC2 redefined: ann, carl. Launch: IC2 or call +15550102 PIN ")
    conf = ic(session, 2)
    assert (conf.activation_pin, conf.user_pin) == pins
    assert [m.contact.nickname for m in conf.members if m.contact] == ["ann", "carl"]


def test_cc_errors(sms: Sms, session: Session) -> None:
    setup_users(sms)
    many = " ".join(f"55512310{i:02d}" for i in range(11))
    cases = {
        "CC": "CC: use CCx <nick|phone|group> ... to define IC x",
        "CC bob": "CC: use CCx <nick|phone|group> ... to define IC x",
        "CC3": "CC3: give the members: CC3 <nick|phone|group> ...",
        "CC31 bob": "CC: slot 31 out of range 1-30",
        "CC0 bob": "CC: slot 0 out of range 1-30",
        "CC 99 bob": "CC: slot 99 out of range 1-30",
        "CC123456789 bob": "CC: slot 1234... out of range 1-30",
        "CC3 zed": "CC: no such user or group 'zed'",
        f"CC3 {many}": "CC3: at most 10 ad hoc numbers, got 11",
    }
    for text, reply in cases.items():
        result = sms(text)
        assert (text, result.reply, result.command) == (text, reply, "CC")
        assert fits_one_sms(result.reply)
    assert session.scalars(select(InstantConference)).all() == []


def test_cc_slot_limit_follows_config(sms: Sms, config: Config) -> None:
    setup_users(sms)
    five = dataclasses.replace(config, conference=dataclasses.replace(config.conference, max_ics_per_subscriber=5))
    assert sms("CC6 bob", cfg=five).reply == "CC: slot 6 out of range 1-5"
    assert sms("CC5 bob", cfg=five).reply.startswith("CC5: IC5 created: bob.")


def test_icx_launches_a_defined_ic(sms: Sms, session: Session, subscriber: Subscriber) -> None:
    setup_users(sms)
    sms("CC1 Team carl bob")
    conf = ic(session, 1)
    for text in ("IC1", "ic 1", "Ic01"):
        result = sms(text)
        assert result.command == "IC"
        assert result.actions == (
            LaunchConference(
                subscriber_id=subscriber.id,
                numbers=(ME, "+15551230002", "+15551230003", "+15551230004"),
                ic_id=conf.id,
            ),
        )
        assert result.reply == f"IC1: calling you and 3 others. Rejoin: +15550100 PIN {conf.user_pin}"
    assert ic_dial_list(conf) == (ME, "+15551230002", "+15551230003", "+15551230004")


def test_icx_errors(sms: Sms) -> None:
    setup_users(sms)
    assert sms("IC7").reply == "IC7: not defined - create it with CC7 <nick/phone/group> ..."
    assert sms("IC31").reply == "IC: slot 31 out of range 1-30"
    sms("CC2 bob")
    sms("UD bob")
    result = sms("IC2")
    assert result.reply == "IC2: has nobody to call - redefine it with CC2 <nick/phone/group> ..."
    assert result.actions == ()


def test_lcx_lists_members_and_pins(sms: Sms, session: Session) -> None:
    setup_users(sms)
    assert sms("LC").reply == "LC: no ICs yet - create one with CC1 <nick/phone/group> ..."
    sms("CC3 Team carl 5551230009")
    sms("CC1 bob")
    conf = ic(session, 3)
    for text in ("LC3", "lc 3"):
        result = sms(text)
        assert result.command == "LC"
        assert result.reply == (
            f"IC3: bob, ann, carl, +15551230009. Call +15550103 PIN {conf.activation_pin}."
            f" Rejoin: +15550100 PIN {conf.user_pin}"
        )
    assert sms("LC").reply == "LC: your ICs: IC1(1), IC3(3)"
    assert sms("LC4").reply == "LC4: IC4 is not defined - create it with CC4 <nick/phone/group> ..."
    assert sms("LC 3 x").reply == "LC: use LCx to list IC x, or LC alone for all"
    assert sms("LC x").reply == "LC: use LCx to list IC x, or LC alone for all"
    assert sms("LC40").reply == "LC: slot 40 out of range 1-30"


def test_ic_without_pool_dnis_still_works(sms: Sms, session: Session) -> None:
    setup_users(sms)
    for row in session.scalars(select(DnisNumber).where(DnisNumber.position == 30)):
        session.delete(row)
    session.flush()
    result = sms("CC30 bob")
    conf = ic(session, 30)
    assert conf.dnis is None
    assert result.reply == f"CC30: IC30 created: bob. Launch: IC30. Rejoin: +15550100 PIN {conf.user_pin}"


def test_sb_blasts_text_to_everyone_but_the_sender(sms: Sms, subscriber: Subscriber) -> None:
    setup_users(sms)
    result = sms("sb Team 5551230001 carl:  Meeting moved to 3pm: room B ")
    assert result.command == "SB"
    assert result.actions == (
        SmsBlast(
            subscriber_id=subscriber.id,
            numbers=("+15551230002", "+15551230003", "+15551230004"),
            text="Meeting moved to 3pm: room B",
        ),
    )
    assert result.reply == "SB: texting 3 numbers: Team(group), +15551230001, carl"


def test_sb_errors(sms: Sms) -> None:
    setup_users(sms)
    usage = "SB: use SB <group|nick|phone> ... : <text>"
    assert sms("SB").reply == usage
    assert sms("SB Team hello").reply == usage
    assert sms("SB : hello").reply == usage
    assert sms("SB Team :   ").reply == usage
    assert sms("SB zed : hi").reply == "SB: no such user or group 'zed'"
    assert sms("SB 5551230001 : hi").reply == "SB: nobody to text besides you"
    assert sms("SB Team : " + "x" * 641).reply == "SB: text too long (641 characters, at most 640)"


def test_icx_of_a_running_ic_answers_once_in_the_subscribers_terms(sms: Sms, session: Session) -> None:
    """Issue 13 item 6: no "calling you" followed by a refusal quoting a database id; nobody is dialled."""
    setup_users(sms)
    sms("CC1 Team carl")
    conf = ic(session, 1)
    run = ConferenceRun(service_type=ServiceType.IC, subject="IC1", ic_id=conf.id, subscriber_id=conf.subscriber_id)
    run.legs = [
        Leg(direction="out", role="subscriber", called=ME, status="connected"),
        Leg(direction="out", role="participant", called="+15551230002", status="connected"),
        Leg(direction="out", role="participant", called="+15551230003", status="ringing"),
        Leg(direction="in", role="participant", calling="+15551230004", status="connected"),
        Leg(direction="out", role="participant", called="+15551230009", status="failed"),
    ]
    session.add(run)
    session.flush()
    result = sms("IC1")
    assert result.command == "IC" and result.actions == ()
    assert result.reply == f"IC1 is already running: 3 connected. Rejoin: +15550100 PIN {conf.user_pin}"
    ended = ConferenceRun(service_type=ServiceType.IC, ic_id=conf.id, ended_at=dt.datetime(2026, 11, 22, 9))
    session.add(ended)
    run.ended_at = dt.datetime(2026, 11, 22, 9, 29)
    session.flush()
    assert sms("IC1").actions != ()  # an ended run does not block a new launch


def test_lcx_lists_the_users_of_groups_within_one_sms(sms: Sms, session: Session) -> None:
    """Issue 13 item 7: "LCx lists users associated with IC number x", groups flattened into their users."""
    setup_users(sms)
    sms("GC sales bob carl")
    sms("GC all sales ann 5551230009 5551230002")
    sms("CC1 all carl 5551230008")
    conf = ic(session, 1)
    tail = f". Call +15550101 PIN {conf.activation_pin}. Rejoin: +15550100 PIN {conf.user_pin}"
    assert sms("LC1").reply == "IC1: bob, carl, ann, +15551230009, +15551230008" + tail
    for i in range(40):
        sms(f"UC user{i:02d} 55512320{i:02d} U{i}")
    sms("GC big " + " ".join(f"user{i:02d}" for i in range(40)))
    sms("CC2 big bob")
    conf2 = ic(session, 2)
    reply = sms("LC2").reply
    assert fits_one_sms(reply)
    assert reply.startswith("IC2: user00, user01, ")
    assert reply.endswith(f" more. Call +15550102 PIN {conf2.activation_pin}. Rejoin: +15550100 PIN {conf2.user_pin}")
    shown = reply.removeprefix("IC2: ").split(". Call")[0].split(", ")
    assert shown[-1] == f"+{41 - (len(shown) - 1)} more"
