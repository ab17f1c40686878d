"""The transmitting link's feed (:mod:`bridge.smpp.feed`): what enters the outbox, when the queue table is
read, and the submit_sm of a part; a fake clock, no database."""

from __future__ import annotations

import random

import smpplib.smpp

from bridge.smpp.concat import encode_message
from bridge.smpp.constants import ESME_ROK, REGISTERED_DELIVERY_RECEIPT
from bridge.smpp.feed import MtFeed, Refill, address, encode_submit
from bridge.smpp.outbox import MessageSubmitted, Outbox, OutgoingMessage
from bridge.smpp.queue import QueuedMt
from bridge.smpp.session import NO_SEQUENCE


def feed(window: int = 10, poll: float = 5.0) -> MtFeed:
    box = Outbox(window=window, tps=1000.0, retry_min_s=1.0, retry_max_s=8.0, max_attempts=3, rng=random.Random(1))
    return MtFeed(box, window=window, queue_poll_s=poll)


def row(mt_id: int, text: str = "hi", message_ids: tuple[str, ...] = ()) -> QueuedMt:
    return QueuedMt(mt_id, "2663", "+15551230001", text, message_ids)


def test_the_first_refill_reads_the_table_and_then_only_every_poll_interval() -> None:
    f = feed()
    first = f.refill(0.0)
    assert first == Refill(poll_limit=f.cap) and f.next_poll == 5.0
    assert f.claimed([row(1), row(2)], first) == [] and not f.more_queued
    assert f.outbox.ids() == {1, 2}
    assert f.refill(4.0) is None  # nothing handed over, nothing due
    again = f.refill(5.0)
    assert again is not None and again.poll_limit == f.cap - 2


def test_handed_over_mts_enter_the_outbox_without_a_read() -> None:
    f = feed()
    f.refill(0.0)
    f.offer([row(1), row(2)])
    assert f.refill(1.0) is None  # added in memory: nothing to write
    assert f.outbox.ids() == {1, 2} and not f.offered


def test_an_mt_offered_and_read_back_is_added_once_and_never_after_it_settled() -> None:
    f = feed()
    f.offer([row(1)])
    refill = f.refill(0.0)
    assert refill is not None and f.outbox.ids() == {1}
    f.claimed([row(1)], refill)  # the table gives it too (the claim excludes the outbox; this is belt and braces)
    assert f.outbox.backlog == 1
    (part,) = f.outbox.due(0.0)
    assert isinstance(f.outbox.on_response(part.key, ESME_ROK, "m1", 0.0), MessageSubmitted)
    f.settled(1)
    f.offer([row(1)])
    later = f.refill(10.0)
    assert later is not None and f.claimed([row(1)], later) == []
    assert f.outbox.backlog == 0 and f.is_settled(1)


def test_text_that_cannot_be_sent_fails_and_settles() -> None:
    f = feed()
    f.offer([row(1, "x" * 200_000)])
    refill = f.refill(0.0)
    assert refill is not None and [mt_id for mt_id, _ in refill.failures] == [1]
    assert f.is_settled(1) and f.outbox.backlog == 0
    assert [mt_id for mt_id, _ in f.claimed([row(2, "y" * 200_000)], refill)] == [2]


def test_parts_accepted_before_a_restart_come_back_as_done() -> None:
    f = feed()
    refill = f.refill(0.0)
    assert refill is not None
    f.claimed([row(1, message_ids=("m1",))], refill)
    assert refill.done == [MessageSubmitted(1, 0, ("m1",))] and f.is_settled(1) and f.outbox.backlog == 0


def test_a_full_read_reads_again_at_once_while_the_outbox_has_room() -> None:
    f = feed(window=1)  # cap 200
    refill = f.refill(0.0)
    assert refill is not None and refill.poll_limit == 200
    f.claimed([row(i) for i in range(100)], Refill(poll_limit=100))
    assert f.more_queued
    assert f.refill(1.0) is None  # 100 in the outbox: not below half the cap
    for _ in range(100):
        (part,) = f.outbox.due(1.0)
        f.outbox.on_response(part.key, ESME_ROK, "m", 1.0)
        if f.outbox.backlog < f.cap // 2:
            break
    again = f.refill(1.0)
    assert again is not None and again.poll_limit == f.cap - f.outbox.backlog


def test_a_full_outbox_takes_nothing_more() -> None:
    f = feed(window=1)
    f.claimed([row(i) for i in range(f.cap)], Refill(poll_limit=f.cap + 1))
    f.offer([row(10_000)])
    assert f.refill(100.0) is None and len(f.offered) == 1


def test_postpone_after_database_trouble() -> None:
    f = feed(poll=5.0)
    f.postpone(3.0)
    assert f.next_poll == 8.0 and f.refill(7.0) is None


def test_addresses_ton_npi() -> None:
    assert address("+15551230001") == (1, 1, "15551230001")
    assert address("2663") == (0, 1, "2663")
    assert address("BRIDGE") == (0, 0, "BRIDGE")
    assert address("+1555ABC") == (0, 0, "+1555ABC")


def test_submit_sm_for_a_part() -> None:
    box = Outbox(window=5, tps=1000.0, retry_min_s=1.0, retry_max_s=8.0, max_attempts=3, rng=random.Random(1))
    box.add(OutgoingMessage(7, "BRIDGE", "+15551230001", encode_message("hello", ref=7)))
    (part,) = box.due(0.0)
    raw = encode_submit(part, 42, registered_delivery=True)
    pdu = smpplib.smpp.parse_pdu(raw, client=NO_SEQUENCE, allow_unknown_opt_params=True)
    assert pdu.sequence == 42 and pdu.command == "submit_sm"
    assert (pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr) == (0, 0, b"BRIDGE")
    assert (pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr) == (1, 1, b"15551230001")
    assert pdu.registered_delivery == REGISTERED_DELIVERY_RECEIPT and pdu.short_message == part.short_message
    plain = smpplib.smpp.parse_pdu(encode_submit(part, 43, registered_delivery=False), client=NO_SEQUENCE)
    assert plain.registered_delivery == 0
