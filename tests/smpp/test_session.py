"""The session bookkeeping of the link (:mod:`bridge.smpp.session`): sequence numbers, pending requests,
enquire_link / response timeout / drain deadlines, driven with a fake clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.smpp.session import MAX_SEQUENCE, NO_SEQUENCE, Pending, Request, Sequence, Timers


def test_sequence_numbers_run_from_one_and_wrap_before_the_sign_bit() -> None:
    seq = Sequence()
    assert [seq.next_sequence() for _ in range(3)] == [1, 2, 3]
    seq.sequence = MAX_SEQUENCE - 1
    assert [seq.next_sequence() for _ in range(3)] == [MAX_SEQUENCE, 1, 2]
    assert NO_SEQUENCE.next_sequence() == 0 and NO_SEQUENCE.sequence == 0


@given(st.integers(0, MAX_SEQUENCE))
def test_every_sequence_number_is_legal(start: int) -> None:
    seq = Sequence()
    seq.sequence = start
    assert 1 <= seq.next_sequence() <= MAX_SEQUENCE


def test_pending_requests_by_sequence_and_the_oldest() -> None:
    pending = Pending()
    assert pending.oldest() is None and not pending.has_submits()
    enquire = pending.add(1, Request("enquire_link", 5.0, ordinal=1))
    submit = pending.add(2, Request("submit_sm", 3.0, part=(7, 0), ordinal=2))
    assert len(pending) == 2 and pending.oldest() is submit and pending.has_submits()
    assert pending.pop(2) is submit and pending.pop(2) is None
    assert not pending.has_submits() and pending.oldest() is enquire
    pending.clear()
    assert len(pending) == 0


def test_enquire_link_every_interval_from_the_last_one() -> None:
    timers = Timers(enquire_link_s=30.0, response_timeout_s=10.0, now=100.0)
    assert not timers.enquire_due(129.9)
    assert timers.enquire_due(131.0)
    assert timers.next_enquire == 161.0 and not timers.enquire_due(160.0) and timers.enquire_due(161.0)


def test_a_request_is_overdue_only_after_the_response_timeout() -> None:
    timers = Timers(enquire_link_s=30.0, response_timeout_s=10.0, now=0.0)
    pending = Pending()
    assert timers.overdue(100.0, pending) is None
    late = pending.add(1, Request("enquire_link", 1.0))
    pending.add(2, Request("submit_sm", 4.0, part=(1, 0)))
    assert timers.overdue(11.0, pending) is None  # exactly the timeout: not yet
    assert timers.overdue(11.5, pending) is late
    assert timers.deadlines(pending) == [30.0, 11.0]


def test_draining_waits_for_submits_up_to_the_response_timeout() -> None:
    timers = Timers(enquire_link_s=30.0, response_timeout_s=10.0, now=0.0)
    pending = Pending()
    pending.add(1, Request("enquire_link", 0.0))
    assert timers.drained(5.0, pending)  # only our own request is pending: unbind at once
    assert timers.drain_deadline == 15.0
    timers = Timers(enquire_link_s=30.0, response_timeout_s=10.0, now=0.0)
    pending.add(2, Request("submit_sm", 5.0, part=(3, 0)))
    assert not timers.drained(5.0, pending) and timers.drain_deadline == 15.0
    assert not timers.drained(14.0, pending)  # the deadline is kept from the first call
    assert 15.0 in timers.deadlines(pending)
    assert timers.drained(15.0, pending)
    pending.pop(2)
    assert timers.drained(14.0, pending)
