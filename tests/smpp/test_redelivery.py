"""Telling an SMSC's redelivery of an MO from a person sending the same text again (issue 13 item 5)."""

from __future__ import annotations

from bridge.smpp.redelivery import LATE_RESPONSE_S, AckLedger

UL = ("+15551230001", "2663", "UL bob")


def ledger() -> AckLedger:
    return AckLedger(window_s=120.0)


def test_a_repeat_on_the_healthy_link_that_carried_our_response_is_a_new_message() -> None:
    acks = ledger()
    session = acks.new_session()
    acks.acknowledged(UL, session, received_at=0.0, ordinal=5, now=0.01)
    assert acks.is_redelivery(UL, session, now=10.0) is False


def test_a_repeat_of_an_mo_we_know_nothing_about_is_a_redelivery() -> None:
    acks = ledger()  # e.g. the first one arrived before a restart
    assert acks.is_redelivery(UL, acks.new_session(), now=10.0) is True


def test_a_repeat_after_a_rebind_is_a_redelivery_unless_the_smsc_had_read_our_response() -> None:
    acks = ledger()
    old = acks.new_session()
    acks.acknowledged(UL, old, received_at=0.0, ordinal=5, now=0.01)
    new = acks.new_session()  # the link was lost: did our response make it?
    assert acks.is_redelivery(UL, new, now=10.0) is True
    acks.confirmed(old, ordinal=4)  # an answer to something written before our response proves nothing
    assert acks.is_redelivery(UL, new, now=10.0) is True
    acks.confirmed(old, ordinal=6)  # the SMSC answered a request written after it: it read our response
    assert acks.is_redelivery(UL, new, now=10.0) is False


def test_a_response_sent_late_may_have_been_given_up_on_by_the_smsc() -> None:
    acks = ledger()
    session = acks.new_session()
    acks.acknowledged(UL, session, received_at=0.0, ordinal=5, now=LATE_RESPONSE_S + 0.5)
    assert acks.is_redelivery(UL, session, now=30.0) is True


def test_a_redelivery_acknowledged_again_makes_the_next_repeat_new() -> None:
    acks = ledger()
    old = acks.new_session()
    acks.acknowledged(UL, old, received_at=0.0, ordinal=5, now=0.01)
    new = acks.new_session()
    assert acks.is_redelivery(UL, new, now=3.0) is True
    acks.acknowledged(UL, new, received_at=3.0, ordinal=2, now=3.01)  # the redelivery, answered on the new link
    assert acks.is_redelivery(UL, new, now=20.0) is False


def test_other_texts_and_senders_are_separate_and_old_entries_are_forgotten() -> None:
    acks = ledger()
    session = acks.new_session()
    acks.acknowledged(UL, session, received_at=0.0, ordinal=1, now=0.0)
    assert acks.is_redelivery(("+15551230002", "2663", "UL bob"), session, now=1.0) is True
    acks.acknowledged(("+15551230002", "2663", "UL"), session, received_at=200.0, ordinal=2, now=200.0)
    assert len(acks) == 1  # the first is older than the window: the database would not match it anyway
