from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from bridge.smpp.concat import encode_message
from bridge.smpp.constants import ESME_ROK
from bridge.smpp.outbox import (
    MessageFailed,
    MessageRetrying,
    MessageSubmitted,
    Outbox,
    OutgoingMessage,
    PartSubmitted,
)

ESME_RTHROTTLED, ESME_RMSGQFUL, ESME_RINVDSTADR = 0x58, 0x14, 0x0B


def outbox(window: int = 10, tps: float = 1000.0, max_attempts: int = 5) -> Outbox:
    return Outbox(
        window=window, tps=tps, retry_min_s=1.0, retry_max_s=8.0, max_attempts=max_attempts, rng=random.Random(3)
    )


def msg(mt_id: int, text: str = "hi") -> OutgoingMessage:
    return OutgoingMessage(mt_id, "2663", "+15551230001", encode_message(text, ref=mt_id))


def test_window_limits_outstanding_submits() -> None:
    box = outbox(window=3)
    for i in range(5):
        box.add(msg(i))
    first = box.due(0.0)
    assert [p.mt_id for p in first] == [0, 1, 2] and box.due(0.0) == [] and box.in_flight == 3
    assert isinstance(box.on_response(first[0].key, ESME_ROK, "m0", 0.0), MessageSubmitted)
    assert [p.mt_id for p in box.due(0.0)] == [3]
    assert box.next_wakeup(0.0) is None  # window full: only a response can free it


def test_tps_limits_the_rate() -> None:
    box = outbox(window=100, tps=5)
    for i in range(20):
        box.add(msg(i))
    assert len(box.due(0.0)) == 5
    assert box.due(0.1) == []
    wake = box.next_wakeup(0.1)
    assert wake is not None and 0.1 < wake <= 0.2 + 1e-9
    assert len(box.due(0.2)) == 1


def test_multipart_message_is_submitted_when_every_part_has_an_id() -> None:
    box = outbox()
    box.add(msg(1, "x" * 400))
    parts = box.due(0.0)
    assert [p.index for p in parts] == [0, 1, 2] and all(p.esm_class == 0x40 for p in parts)
    assert box.on_response(parts[1].key, ESME_ROK, "b", 0.0) == PartSubmitted(1, 3, ("", "b", ""), in_flight=2)
    assert box.on_response(parts[0].key, ESME_ROK, "a", 0.0) == PartSubmitted(1, 3, ("a", "b", ""), in_flight=1)
    done = box.on_response(parts[2].key, ESME_ROK, "c", 0.0)
    assert done == MessageSubmitted(1, 3, ("a", "b", "c")) and box.backlog == 0


def test_throttled_part_is_retried_after_backoff_and_pauses_the_outbox() -> None:
    box = outbox()
    box.add(msg(1))
    box.add(msg(2))
    p1, p2 = box.due(0.0)
    outcome = box.on_response(p1.key, ESME_RTHROTTLED, "", 0.0)
    assert isinstance(outcome, MessageRetrying) and 0.5 <= outcome.retry_at <= 1.0
    box.add(msg(3))
    assert box.due(0.1) == []  # paused: the SMSC asked us to slow down
    assert [p.mt_id for p in box.due(0.5)] == [3]
    retry = box.due(outcome.retry_at)
    assert [(p.mt_id, p.attempt) for p in retry] == [(1, 2)]
    assert box.on_response(retry[0].key, ESME_ROK, "m1", 2.0) == MessageSubmitted(1, 2, ("m1",))


def test_still_throttled_after_max_attempts_fails() -> None:
    box = outbox(max_attempts=2)
    box.add(msg(1))
    (p,) = box.due(0.0)
    box.on_response(p.key, ESME_RMSGQFUL, "", 0.0)
    (p,) = box.due(10.0)
    outcome = box.on_response(p.key, ESME_RMSGQFUL, "", 10.0)
    assert isinstance(outcome, MessageFailed) and "after 2 attempts" in outcome.error


def test_permanent_error_fails_the_whole_message_and_drops_its_other_parts() -> None:
    box = outbox(window=1)
    box.add(msg(1, "y" * 400))
    box.add(msg(2))
    (p,) = box.due(0.0)
    outcome = box.on_response(p.key, ESME_RINVDSTADR, "", 0.0)
    assert isinstance(outcome, MessageFailed) and outcome.status == ESME_RINVDSTADR and "0x0B" in outcome.error
    assert [q.mt_id for q in box.due(0.0)] == [2]


def test_link_loss_puts_in_flight_parts_back_in_order_without_counting_an_attempt() -> None:
    box = outbox()
    box.add(msg(1, "z" * 400))
    parts = box.due(0.0)
    box.on_response(parts[0].key, ESME_ROK, "a", 0.0)
    box.on_link_lost()
    again = box.due(1.0)
    assert [(p.index, p.attempt) for p in again] == [(1, 1), (2, 1)]


def test_unknown_response_is_ignored() -> None:
    assert outbox().on_response((99, 0), ESME_ROK, "x", 0.0) is None


@given(
    texts=st.lists(st.sampled_from(["hi", "x" * 200, "ж" * 100]), min_size=1, max_size=12),
    answers=st.lists(
        st.sampled_from([ESME_ROK, ESME_ROK, ESME_RTHROTTLED, ESME_RMSGQFUL, ESME_RINVDSTADR]), max_size=200
    ),
    losses=st.sets(st.integers(0, 200), max_size=5),
    window=st.integers(1, 4),
)
def test_every_message_settles_exactly_once(
    texts: list[str], answers: list[int], losses: set[int], window: int
) -> None:
    """Whatever the SMSC answers (and however often the link drops), each message ends submitted or failed once."""
    box = outbox(window=window, max_attempts=3)
    for i, text in enumerate(texts):
        box.add(msg(i, text))
    settled: dict[int, object] = {}
    now, step = 0.0, 0
    while box.backlog and step < 2000:
        if step in losses:
            box.on_link_lost()
        for part in box.due(now):
            status = answers[step % len(answers)] if answers else ESME_ROK
            outcome = box.on_response(part.key, status, f"id{step}", now)
            step += 1
            if isinstance(outcome, MessageSubmitted | MessageFailed):
                assert outcome.mt_id not in settled
                settled[outcome.mt_id] = outcome
        now += 0.5
        step += 1
    assert sorted(settled) == list(range(len(texts)))


# --- crash safety (issue 13 item 4): every accepted part is reported at once, and recovery resumes ----------


def test_each_accepted_part_is_reported_at_once_so_it_can_be_recorded() -> None:
    box = outbox()
    box.add(msg(1, "x" * 200))  # two parts
    first, second = box.due(0.0)
    partial = box.on_response(first.key, ESME_ROK, "m1", 0.0)
    assert partial == PartSubmitted(1, 2, message_ids=("m1", ""), in_flight=1)
    done = box.on_response(second.key, ESME_ROK, "m2", 0.0)
    assert done == MessageSubmitted(1, 2, ("m1", "m2"))


def test_a_recovered_message_submits_only_the_parts_without_an_id_with_the_same_ref() -> None:
    box = outbox()
    assert box.add(msg(1, "x" * 200), known_ids=("m1", "")) is None
    (part,) = box.due(0.0)
    assert part.index == 1 and part.short_message[:6] == bytes([5, 0, 3, 1, 2, 2])
    assert box.on_response(part.key, ESME_ROK, "m2", 0.0) == MessageSubmitted(1, 1, ("m1", "m2"))


def test_a_recovered_message_with_every_id_known_is_submitted_without_a_submit() -> None:
    box = outbox()
    assert box.add(msg(1, "x" * 200), known_ids=("m1", "m2")) == MessageSubmitted(1, 0, ("m1", "m2"))
    assert box.due(0.0) == [] and 1 not in box
