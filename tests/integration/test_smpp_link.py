"""SMPP link against the real node-smpp SMSC simulator on loopback (issue 3).

Each test starts the simulator on free ports and an SmppService on its own loop thread, with a fresh
SQLite database holding one registered subscriber where the command language is involved.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bridge.commands import REFUSAL
from bridge.config import Config
from bridge.db import make_engine, make_session_factory
from bridge.db.models import Contact, SmsDirection, SmsMessage, SmsStatus
from bridge.smpp.queue import queue_mt
from bridge.smpp.store import INCOMPLETE_REPLY, UNREADABLE_REPLY
from tests.integration.smpp_harness import MOBILE, SHORT_CODE, Running, Smsc, register, smpp_config, wait_for

pytestmark = pytest.mark.integration
UNKNOWN = "+447700900999"


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def smsc(tmp_path: Path) -> Iterator[Smsc]:
    sim = Smsc(tmp_path)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def running(config: Config, smsc: Smsc, factory: sessionmaker[Session]) -> Iterator[Running]:
    """A bound service with a registered subscriber (MOBILE) and the US numbering plan."""
    register(factory)
    service = Running(smpp_config(config, smsc), factory)
    wait_for(lambda: service.state() == "bound", what="bind")
    yield service
    service.stop()


def mos(factory: sessionmaker[Session]) -> list[SmsMessage]:
    with factory() as session:
        query = select(SmsMessage).where(SmsMessage.direction == SmsDirection.MO).order_by(SmsMessage.id)
        return list(session.scalars(query))


def mts(factory: sessionmaker[Session]) -> list[SmsMessage]:
    with factory() as session:
        query = select(SmsMessage).where(SmsMessage.direction == SmsDirection.MT).order_by(SmsMessage.id)
        return list(session.scalars(query))


def queue(factory: sessionmaker[Session], *texts: str, to: str = MOBILE) -> list[int]:
    with factory() as session:
        ids = [queue_mt(session, destination=to, text=t, source=SHORT_CODE).id for t in texts]
        session.commit()
    return ids


# --- bind -------------------------------------------------------------------------------------------------


def test_wrong_password_is_refused_and_retried_with_backoff_until_it_binds(
    config: Config, tmp_path: Path, factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    smsc = Smsc(tmp_path, password="other")
    smsc.start()
    running = Running(smpp_config(config, smsc, password="secret", reconnect_min_s=0.25, reconnect_max_s=5.0), factory)
    try:

        def refused() -> list[dict[str, object]] | None:
            binds = smsc.stats()["binds"]
            return binds if len(binds) >= 5 and not any(b["ok"] for b in binds) else None

        binds = wait_for(refused, what="5 refused binds")
        status = running.service.status()
        assert status["state"] in ("waiting", "connecting", "binding")
        assert "ESME_RBINDFAIL" in status["reason"]
        assert "bind refused by the SMSC: ESME_RBINDFAIL (0x0D); check smpp.system_id and smpp.password" in caplog.text
        gaps = [float(b["ts"]) - float(a["ts"]) for a, b in zip(binds, binds[1:], strict=False)]  # type: ignore[arg-type]
        # capped exponential back-off: the 4th delay is drawn from [1, 2] s, the 1st from [0.125, 0.25] s
        assert gaps[3] > gaps[0]
        smsc.stop()
        smsc.start(password="secret")  # the operator fixes the password on the SMSC side
        wait_for(lambda: running.state() == "bound", what="bind with the right password")
        assert smsc.stats()["binds"][-1]["ok"] is True
        assert smsc.stats()["binds"][-1]["address_range"] == SHORT_CODE
    finally:
        running.stop()
        smsc.stop()


def test_stop_unbinds_cleanly(running: Running, smsc: Smsc) -> None:
    running.stop()
    wait_for(lambda: smsc.stats()["unbinds"] == 1, what="unbind")
    assert running.service.status()["state"] == "stopped"


def test_split_binds_receive_and_transmit(config: Config, smsc: Smsc, factory: sessionmaker[Session]) -> None:
    register(factory)
    running = Running(smpp_config(config, smsc, bind_mode="split"), factory)
    try:
        wait_for(lambda: running.state() == "bound", what="both binds")
        assert sorted(b["cmd"] for b in smsc.stats()["binds"]) == ["bind_receiver", "bind_transmitter"]
        smsc.mo("UL")
        wait_for(lambda: smsc.messages(to=MOBILE), what="reply over the transmitter")
        wait_for(lambda: mts(factory)[0].status == SmsStatus.DELIVERED, what="receipt over the receiver")
    finally:
        running.stop()


# --- MO -> command language -> MT ------------------------------------------------------------------------


def test_uc_from_registered_mobile_creates_user_and_replies(
    config: Config, smsc: Smsc, factory: sessionmaker[Session]
) -> None:
    register(factory)
    # The example number 5551234 has no E.164 form in the US (local-only, refused by bridge.phone);
    # in Germany it is a possible number, so the subscriber's numbering plan is German here.
    german = dataclasses.replace(config, numbering=dataclasses.replace(config.numbering, default_country="DE"))
    running = Running(smpp_config(german, smsc), factory)
    try:
        wait_for(lambda: running.state() == "bound", what="bind")
        assert smsc.mo("UC bob 5551234 Bob.Smith")["status"] == [0]
        replies = wait_for(lambda: smsc.messages(to=MOBILE), what="reply MT")
        with factory() as session:
            bob = session.scalar(select(Contact).where(Contact.nickname == "bob"))
            assert bob is not None and bob.first_name == "Bob" and bob.phone == "+495551234"
        (mo,) = mos(factory)
        assert mo.status == SmsStatus.HANDLED and mo.command == "UC" and mo.source == MOBILE
        (reply,) = mts(factory)
        assert reply.reply_to_id == mo.id and reply.text == replies[0] and reply.destination == MOBILE
        wait_for(lambda: mts(factory)[0].status == SmsStatus.DELIVERED, what="delivery receipt matched")
        assert smsc.submits()[0]["registered_delivery"] == 1
        assert smsc.submits()[0]["source_addr"] == SHORT_CODE
    finally:
        running.stop()


def test_unknown_number_gets_the_refusal(running: Running, smsc: Smsc, factory: sessionmaker[Session]) -> None:
    smsc.mo("UC bob 5551234 Bob.Smith", source=UNKNOWN)
    assert wait_for(lambda: smsc.messages(to=UNKNOWN), what="refusal") == [REFUSAL]
    (mo,) = mos(factory)
    assert mo.status == SmsStatus.REFUSED and mo.subscriber_id is None
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 0


@pytest.mark.parametrize("split", ["udh8", "udh16", "sar"])
def test_two_part_mo_is_reassembled(running: Running, smsc: Smsc, factory: sessionmaker[Session], split: str) -> None:
    text = "UC carol +15551230077 Carol.Jones"
    result = smsc.mo(text, split=split, parts=2, ref=300 if split != "udh8" else 7)
    assert result["status"] == [0, 0]
    wait_for(lambda: smsc.messages(to=MOBILE), what="reply to the reassembled MO")
    (mo,) = mos(factory)
    assert mo.text == text and mo.status == SmsStatus.HANDLED
    with factory() as session:
        assert session.scalar(select(Contact.phone).where(Contact.nickname == "carol")) == "+15551230077"


def test_ucs2_mo(running: Running, smsc: Smsc, factory: sessionmaker[Session]) -> None:
    smsc.mo("UC dan +15551230078 Dan.Brown", ucs2=True)
    smsc.mo("Привет, мост! 你好 €")
    wait_for(lambda: len(smsc.messages(to=MOBILE)) == 2, what="two replies")
    texts = [m.text for m in mos(factory)]
    assert texts == ["UC dan +15551230078 Dan.Brown", "Привет, мост! 你好 €"]
    with factory() as session:
        assert session.scalar(select(Contact.phone).where(Contact.nickname == "dan")) == "+15551230078"


def test_long_mixed_ucs2_mo_in_three_parts(running: Running, smsc: Smsc, factory: sessionmaker[Session]) -> None:
    text = "Конференция " * 20 + "end"
    smsc.mo(text, split="udh8", parts=3, ref=200)
    wait_for(lambda: smsc.messages(to=MOBILE), what="reply")
    assert [m.text for m in mos(factory)] == [text]


def test_long_replies_are_split_with_udh_and_reassembled_by_the_smsc(
    running: Running, smsc: Smsc, factory: sessionmaker[Session]
) -> None:
    gsm = "Conference 4711 {room} costs 5€ [ok] ~ ^ | \\ and starts now. " * 6
    ucs2 = "Конференция начинается сейчас, номер 4711. " * 5
    queue(factory, gsm, ucs2)
    wait_for(lambda: len(smsc.messages(to=MOBILE)) == 2, what="both long MTs")
    assert smsc.messages(to=MOBILE) == [gsm, ucs2]
    submits = smsc.submits()
    assert len(submits) > 4 and all(s["esm_class"] & 0x40 for s in submits)
    assert {s["data_coding"] for s in submits} == {0, 8}
    wait_for(lambda: all(m.status == SmsStatus.DELIVERED for m in mts(factory)), what="receipts of every part")


def test_help_reply_longer_than_one_sms(running: Running, smsc: Smsc, factory: sessionmaker[Session]) -> None:
    smsc.mo("??")
    wait_for(lambda: smsc.messages(to=MOBILE), what="help reply")
    (reply,) = mts(factory)
    assert smsc.messages(to=MOBILE) == [reply.text]


# --- bad input ----------------------------------------------------------------------------------------------


def test_undecodable_and_empty_mo_are_acked_and_answered(
    running: Running, smsc: Smsc, factory: sessionmaker[Session]
) -> None:
    assert smsc.mo(hex="fffe41", data_coding=0)["status"] == [0]  # octets above 0x7F are not GSM septets
    assert smsc.mo(hex="d83d", data_coding=8)["status"] == [0]  # lone UTF-16 surrogate
    assert smsc.mo(hex="0102", data_coding=4)["status"] == [0]  # binary
    assert smsc.mo("")["status"] == [0]
    wait_for(lambda: len(smsc.messages(to=MOBILE)) == 4, what="four replies")
    assert smsc.messages(to=MOBILE).count(UNREADABLE_REPLY) == 3
    statuses = [m.status for m in mos(factory)]
    assert statuses.count(SmsStatus.INVALID) == 3 and statuses.count(SmsStatus.HANDLED) == 1
    assert running.state() == "bound" and smsc.stats()["binds"].__len__() == 1


def test_smsc_redelivery_is_not_run_twice(running: Running, smsc: Smsc, factory: sessionmaker[Session]) -> None:
    assert smsc.mo("UC erin +15551230079 Erin.Hill", repeat=2)["status"] == [0, 0]
    wait_for(lambda: smsc.messages(to=MOBILE), what="reply")
    assert len(mos(factory)) == 1 and running.service.status()["duplicates"] == 1
    queue(factory, "marker")  # everything queued before the marker has been submitted once it arrives
    wait_for(lambda: "marker" in smsc.messages(to=MOBILE), what="marker")
    assert len(smsc.messages(to=MOBILE)) == 2


def test_a_person_repeating_a_command_is_answered_but_a_redelivery_after_a_lost_link_is_not_run_twice(
    running: Running, smsc: Smsc, factory: sessionmaker[Session]
) -> None:
    """Issue 13 item 5: ``UL`` twice on a healthy link is two messages from a person (two replies); the
    SMSC redelivering an MO whose response it lost with the link is one (one reply)."""
    assert smsc.mo("UL")["status"] == [0]
    wait_for(lambda: len(smsc.messages(to=MOBILE)) == 1, what="the first reply")
    assert smsc.mo("UL")["status"] == [0]  # the same text again, well within dedup_window_s
    wait_for(lambda: len(smsc.messages(to=MOBILE)) == 2, what="the second reply")
    assert [m.text for m in mos(factory)] == ["UL", "UL"] and running.service.status()["duplicates"] == 0

    assert smsc.mo("GL", lose_response=True)["status"] == [0, 0]  # sent, link lost, sent again after the rebind
    assert len(smsc.stats()["binds"]) == 2
    queue(factory, "marker")  # everything queued before the marker has been submitted once it arrives
    wait_for(lambda: "marker" in smsc.messages(to=MOBILE), what="marker")
    assert [m.text for m in mos(factory)] == ["UL", "UL", "GL"] and running.service.status()["duplicates"] == 1
    replies = smsc.messages(to=MOBILE)
    gl = [text for text in replies if text.startswith("GL")]
    assert [text for text in replies if text not in gl] == [replies[0], replies[0], "marker"]  # two UL replies
    # One GL reply; two when its submit_sm was in flight as the SMSC dropped the link: the SMSC kept it, the
    # response never came, it goes again after the rebind (MT at-least-once, README "Delivery guarantees").
    assert len(gl) in (1, 2) and len(set(gl)) == 1


def test_garbage_from_the_smsc_means_reconnect(running: Running, smsc: Smsc, factory: sessionmaker[Session]) -> None:
    smsc.control(garbage=True)
    wait_for(lambda: len(smsc.stats()["binds"]) == 2 and running.state() == "bound", what="rebind after garbage")
    smsc.mo("UL")
    wait_for(lambda: smsc.messages(to=MOBILE), what="reply after the reconnect")


def test_unknown_command_gets_generic_nack_and_the_link_stays(running: Running, smsc: Smsc) -> None:
    smsc.control(raw="00000010" + "00000099" + "00000000" + "00000007")  # command_id 0x99 does not exist
    assert wait_for(lambda: smsc.stats()["generic_nacks"], what="generic_nack") == [{"sequence": 7, "status": 3}]
    smsc.mo("UL")
    wait_for(lambda: smsc.messages(to=MOBILE), what="reply on the same bind")
    assert len(smsc.stats()["binds"]) == 1


def test_unbind_from_the_smsc_means_rebind(running: Running, smsc: Smsc, caplog: pytest.LogCaptureFixture) -> None:
    smsc.control(unbind=True)
    wait_for(lambda: len(smsc.stats()["binds"]) == 2 and running.state() == "bound", what="rebind after unbind")
    assert "bound -> waiting (the SMSC unbound)" in caplog.text


def test_missing_enquire_link_response_means_dead_link(
    config: Config, smsc: Smsc, factory: sessionmaker[Session]
) -> None:
    running = Running(smpp_config(config, smsc, enquire_link_s=0.3, response_timeout_s=0.6), factory)
    try:
        wait_for(lambda: running.state() == "bound", what="bind")
        smsc.control(ignore_enquire_link=True)
        wait_for(lambda: "enquire_link" in running.service.status()["reason"], what="dead link noticed")
        smsc.control(ignore_enquire_link=False)
        wait_for(lambda: running.state() == "bound" and len(smsc.stats()["binds"]) >= 2, what="rebind")
    finally:
        running.stop()


def test_incomplete_concatenated_mo_times_out_politely(
    config: Config, smsc: Smsc, factory: sessionmaker[Session]
) -> None:
    register(factory)
    running = Running(smpp_config(config, smsc, reassembly_timeout_s=0.5), factory)
    try:
        wait_for(lambda: running.state() == "bound", what="bind")
        smsc.mo(hex="050003090201" + b"UL part one".hex(), data_coding=0, esm_class=0x40)
        assert wait_for(lambda: smsc.messages(to=MOBILE), what="apology") == [INCOMPLETE_REPLY]
        (mo,) = mos(factory)
        assert mo.status == SmsStatus.INVALID and "parts 1 of 2" in mo.error and mo.text == "UL part one"
    finally:
        running.stop()


# --- durability and load ------------------------------------------------------------------------------------


def test_smsc_restart_reconnects_and_delivers_queued_mt_exactly_once(
    running: Running, smsc: Smsc, factory: sessionmaker[Session]
) -> None:
    queue(factory, "before 1", "before 2")
    wait_for(lambda: len(smsc.messages(to=MOBILE)) == 2, what="MTs before the outage")
    smsc.stop()
    wait_for(lambda: running.state() != "bound", what="link loss noticed")
    during = [f"during {i}" for i in range(5)]
    queue(factory, *during)
    smsc.start()
    wait_for(lambda: running.state() == "bound", what="reconnect")
    queue(factory, "after")
    wait_for(lambda: "after" in smsc.messages(to=MOBILE), timeout=30, what="MT after the reconnect")
    wait_for(lambda: len(smsc.messages(to=MOBILE)) == 8, what="all MTs")
    assert sorted(smsc.messages(to=MOBILE)) == sorted(["before 1", "before 2", *during, "after"])
    assert all(m.status in (SmsStatus.SUBMITTED, SmsStatus.DELIVERED) for m in mts(factory))


def test_mo_left_received_by_a_crash_is_handled_on_start(
    config: Config, smsc: Smsc, factory: sessionmaker[Session]
) -> None:
    register(factory)
    with factory() as session:
        session.add(
            SmsMessage(
                direction=SmsDirection.MO,
                status=SmsStatus.RECEIVED,
                source=MOBILE,
                destination=SHORT_CODE,
                text="UC fay +15551230080 Fay.Lee",
                created_at=dt.datetime(2026, 1, 1),
            )
        )
        session.commit()
    running = Running(smpp_config(config, smsc), factory)
    try:
        wait_for(lambda: smsc.messages(to=MOBILE), what="reply to the recovered MO")
        assert mos(factory)[0].status == SmsStatus.HANDLED
    finally:
        running.stop()


def test_a_long_mt_interrupted_after_its_first_part_is_completed_not_sent_again(
    config: Config, smsc: Smsc, factory: sessionmaker[Session]
) -> None:
    """Issue 13 item 4: each accepted part's message id is recorded at once, and a restart submits only the
    parts without one, with the same UDH reference (the handset joins them)."""
    text = "Conference 4711 starts now; dial back on 8006791401 with PIN 4242 if you drop out. " * 2
    smsc.control(throttle_every=2, throttle_status=0x58)  # part 1 accepted, part 2 throttled
    first = Running(smpp_config(config, smsc, retry_min_s=4.0, retry_max_s=4.0), factory)
    try:
        wait_for(lambda: first.state() == "bound", what="bind")
        (mt_id,) = queue(factory, text)
        wait_for(lambda: smsc.stats()["throttled"] == 1, what="part 2 throttled")
        wait_for(lambda: mts(factory)[0].smsc_message_ids.endswith(","), what="part 1's id recorded")
    finally:
        first.stop()  # the process ends with part 2 waiting for its retry
    smsc.control(throttle_every=0)
    (row,) = mts(factory)
    assert row.status == SmsStatus.QUEUED and row.smsc_message_ids == smsc.submits()[0]["message_id"] + ","
    second = Running(smpp_config(config, smsc), factory)
    try:
        wait_for(lambda: mts(factory)[0].status in (SmsStatus.SUBMITTED, SmsStatus.DELIVERED), what="MT completed")
        assert smsc.messages(to=MOBILE) == [text]
        ref = f"{mt_id % 256:02x}"
        assert [s["udh"] for s in smsc.submits()] == [[f"0003{ref}0201"], [f"0003{ref}0202"]]
        assert mts(factory)[0].smsc_message_ids == ",".join(s["message_id"] for s in smsc.submits())
    finally:
        second.stop()


def test_an_mt_left_submitting_by_a_crash_is_reported_and_submitted_again(
    config: Config, smsc: Smsc, factory: sessionmaker[Session]
) -> None:
    """The one window SMPP leaves: the submit_sm was written, its response never recorded. Handled
    explicitly: counted as ambiguous, logged, and submitted again (at-least-once)."""
    (mt_id,) = queue(factory, "your conference is ready")
    with factory() as session:
        row = session.get(SmsMessage, mt_id)
        assert row is not None
        row.error, row.attempts = "submitting part 1/1 as sequence 9", 1
        session.commit()
    running = Running(smpp_config(config, smsc), factory)
    try:
        wait_for(lambda: smsc.messages(to=MOBILE), what="the MT submitted again")
        assert running.service.status()["ambiguous"] == 1
        wait_for(lambda: mts(factory)[0].status == SmsStatus.DELIVERED, what="its receipt")
        assert mts(factory)[0].error == ""
    finally:
        running.stop()


def test_burst_of_1000_mo_gets_1000_replies(running: Running, smsc: Smsc, factory: sessionmaker[Session]) -> None:
    messages = [
        {"source_addr": MOBILE.lstrip("+"), "destination_addr": SHORT_CODE, "text": f"UC u{i} +1555124{i:04d} U.N{i}"}
        for i in range(1000)
    ]
    result = smsc.http("POST", "/mo_batch", {"messages": messages}, timeout=120)
    assert result["sent"] == 1000 and set(result["status"]) == {0}
    wait_for(lambda: len(smsc.submits()) >= 1000, timeout=120, what="1000 replies")
    assert len(smsc.messages(to=MOBILE)) == 1000
    rows = mos(factory)
    assert len(rows) == 1000 and {m.status for m in rows} == {SmsStatus.HANDLED}
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 1000


def test_throttled_submits_are_retried_and_all_arrive(
    running: Running, smsc: Smsc, factory: sessionmaker[Session]
) -> None:
    smsc.control(throttle_every=3, throttle_status=0x58)
    texts = [f"message {i}" for i in range(30)]
    queue(factory, *texts)
    wait_for(lambda: len(smsc.messages(to=MOBILE)) >= 30, timeout=60, what="30 MTs despite throttling")
    assert sorted(smsc.messages(to=MOBILE)) == sorted(texts)
    assert smsc.stats()["throttled"] >= 10
    rows = mts(factory)
    assert all(m.status in (SmsStatus.SUBMITTED, SmsStatus.DELIVERED) for m in rows)
    assert max(m.attempts for m in rows) >= 2


def test_queue_full_is_retried_too(running: Running, smsc: Smsc, factory: sessionmaker[Session]) -> None:
    smsc.control(throttle_every=2, throttle_status=0x14)
    queue(factory, "one", "two", "three")
    wait_for(lambda: len(smsc.messages(to=MOBILE)) >= 3, timeout=60, what="3 MTs despite ESME_RMSGQFUL")
    assert sorted(smsc.messages(to=MOBILE)) == ["one", "three", "two"]


def test_permanent_submit_error_is_recorded(running: Running, smsc: Smsc, factory: sessionmaker[Session]) -> None:
    smsc.control(throttle_every=1, throttle_status=0x0B)  # ESME_RINVDSTADR on every submit
    (mt_id,) = queue(factory, "nobody home")
    wait_for(lambda: mts(factory)[0].status == SmsStatus.FAILED, what="MT marked failed")
    assert "0x0B" in mts(factory)[0].error and mts(factory)[0].id == mt_id


# --- the engine hand-off -------------------------------------------------------------------------------------


def test_actions_reach_the_engine_loop_and_a_failing_command_gets_an_apology(
    config: Config, smsc: Smsc, factory: sessionmaker[Session]
) -> None:
    from bridge.commands import CommandResult
    from bridge.commands.actions import LaunchConference
    from bridge.smpp.store import FAILED_REPLY

    launch = LaunchConference(subscriber_id=1, numbers=(MOBILE, "+15551230082"))

    def execute(session: Session, *, sender: str, text: str, config: Config, now: dt.datetime) -> CommandResult:
        if text == "boom":
            raise RuntimeError("bug in a handler")
        return CommandResult(reply="Calling 2 numbers", actions=(launch,), command="IC", subscriber_id=1)

    register(factory)
    running = Running(smpp_config(config, smsc), factory, execute=execute)
    try:
        wait_for(lambda: running.state() == "bound", what="bind")
        smsc.mo("IC bob")
        wait_for(lambda: running.actions, what="actions on the engine loop")
        assert running.actions == [launch]
        smsc.mo("boom")
        wait_for(lambda: len(smsc.messages(to=MOBILE)) == 2, what="two replies")
        assert smsc.messages(to=MOBILE) == ["Calling 2 numbers", FAILED_REPLY]
        assert [m.status for m in mos(factory)] == [SmsStatus.HANDLED, SmsStatus.INVALID]
        assert "bug in a handler" in mos(factory)[1].error
    finally:
        running.stop()
