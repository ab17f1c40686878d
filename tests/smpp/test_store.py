"""The database side of the SMPP service, on a fresh migrated SQLite database per test."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.commands.actions import LaunchConference
from bridge.config import Config
from bridge.db.models import SmsDirection, SmsMessage, SmsStatus
from bridge.smpp import queue, store
from bridge.smpp.concat import Segment
from bridge.smpp.outbox import MessageFailed, MessageRetrying, MessageSubmitted, PartSubmitted, SubmitPart
from bridge.smpp.receipt import DeliveryReceipt

NOW = dt.datetime(2026, 11, 22, 9, 30)
MOBILE = "+15551230001"


@dataclass(frozen=True)
class FakeResult:
    reply: str
    actions: tuple[Any, ...] = ()
    command: str = "UC"
    subscriber_id: int | None = None


@dataclass
class FakeExecute:
    """Stands in for bridge.commands.execute: records calls, answers with ``result``."""

    result: FakeResult
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, session: Session, **kwargs: Any) -> FakeResult:
        self.calls.append(kwargs)
        return self.result


def mo(session: Session, text: str = "UL", at: dt.datetime = NOW, window: float = 120.0) -> SmsMessage | None:
    return store.record_mo(session, source=MOBILE, destination="2663", text=text, now=at, window_s=window)


def test_same_text_within_the_window_is_a_redelivery(session: Session) -> None:
    first = mo(session)
    assert first is not None and first.status == SmsStatus.RECEIVED and first.dedup_key
    assert mo(session, at=NOW + dt.timedelta(seconds=119)) is None
    assert mo(session, text="UL x") is not None
    assert mo(session, at=NOW + dt.timedelta(seconds=121)) is not None


def test_dedup_keys_stay_unique_even_when_the_clock_goes_back(session: Session) -> None:
    assert mo(session, at=NOW) is not None
    assert mo(session, at=NOW + dt.timedelta(seconds=300)) is not None
    assert mo(session, at=NOW + dt.timedelta(seconds=60)) is None
    session.commit()


def test_parts_are_saved_once_and_reloaded_until_done(session: Session) -> None:
    a = Segment(MOBILE, "2663", 9, 2, 1, 0, b"UC ")
    assert store.save_part(session, a, NOW) is True
    assert store.save_part(session, a, NOW) is False
    assert store.load_parts(session) == [a]
    store.finish_parts(session, a.key)
    assert store.load_parts(session) == []
    assert store.save_part(session, a, NOW) is False  # a redelivery after assembly is still recognised
    store.purge_parts(session, NOW + dt.timedelta(seconds=1))
    assert store.save_part(session, a, NOW) is True


def test_handle_mo_marks_it_and_queues_the_reply_in_the_same_transaction(session: Session, config: Config) -> None:
    message = mo(session, "IC1")
    assert message is not None
    action = LaunchConference(subscriber_id=1, numbers=(MOBILE,))
    execute = FakeExecute(FakeResult(reply="Launching", actions=(action,), command="IC", subscriber_id=None))
    assert store.received_mo_ids(session) == [message.id]
    actions = store.handle_mo(session, message.id, execute=execute, config=config, now=NOW)
    assert actions == (action,) and execute.calls[0]["sender"] == MOBILE and execute.calls[0]["text"] == "IC1"
    assert message.status == SmsStatus.REFUSED and message.command == "IC"
    reply = session.scalar(select(SmsMessage).where(SmsMessage.direction == SmsDirection.MT))
    assert reply is not None and reply.reply_to_id == message.id and reply.source == "2663"
    assert reply.destination == MOBILE and reply.status == SmsStatus.QUEUED
    assert store.received_mo_ids(session) == []
    assert store.handle_mo(session, message.id, execute=execute, config=config, now=NOW) == ()  # not twice


def test_fail_mo_apologises(session: Session, config: Config) -> None:
    message = mo(session)
    assert message is not None
    store.fail_mo(session, message.id, error="boom", config=config, now=NOW)
    reply = session.scalar(select(SmsMessage).where(SmsMessage.reply_to_id == message.id))
    assert message.status == SmsStatus.INVALID and reply is not None and reply.text == store.FAILED_REPLY


def test_reply_comes_from_a_configured_short_code(session: Session, config: Config) -> None:
    message = store.record_mo(session, source=MOBILE, destination="9999", text="UL", now=NOW, window_s=60)
    assert message is not None and store.reply_source(message, config) == config.smpp.short_codes[0]


def test_invalid_mo_gets_a_polite_reply_once(session: Session) -> None:
    kwargs: dict[str, Any] = dict(
        source=MOBILE, destination="2663", text="", error="bad", reply="Sorry", reply_from="2663", now=NOW
    )
    assert store.record_invalid_mo(session, window_s=60, identity="u:ff", **kwargs) is not None
    assert store.record_invalid_mo(session, window_s=60, identity="u:ff", **kwargs) is None
    assert store.record_invalid_mo(session, window_s=60, identity="u:fe", **kwargs) is not None
    replies = session.scalars(select(SmsMessage).where(SmsMessage.direction == SmsDirection.MT)).all()
    assert [r.text for r in replies] == ["Sorry", "Sorry"]


def test_claim_settle_and_receipts(session: Session) -> None:
    ids = [queue.queue_mt(session, destination=MOBILE, text=f"t{i}", source="2663").id for i in range(4)]
    later = queue.queue_mt(session, destination=MOBILE, text="later", source="2663")
    later.next_attempt_at = NOW + dt.timedelta(minutes=5)
    claimed = store.claim_queued(session, exclude={ids[0]}, limit=10, now=NOW)
    assert [m.id for m in claimed] == ids[1:]
    store.settle(
        session,
        [
            MessageSubmitted(ids[0], 1, ("a1", "a2")),
            MessageFailed(ids[1], 1, 0x0B, "part 1/1: ESME_RINVDSTADR"),
            MessageRetrying(ids[2], 1, 0x58, retry_at=10.0),
        ],
        NOW,
        lambda at: NOW + dt.timedelta(seconds=at),
    )
    session.expire_all()
    rows = {m.id: m for m in session.scalars(select(SmsMessage))}
    assert rows[ids[0]].status == SmsStatus.SUBMITTED and rows[ids[0]].smsc_message_ids == "a1,a2"
    assert rows[ids[1]].status == SmsStatus.FAILED and "RINVDSTADR" in rows[ids[1]].error
    assert rows[ids[2]].next_attempt_at == NOW + dt.timedelta(seconds=10)
    assert store.find_mt(session, "a2") is rows[ids[0]]
    assert store.find_mt(session, "a") is None
    parts: set[str] = set()
    first = DeliveryReceipt("a1", "DELIVRD")
    assert store.apply_receipt(session, first, mt_id=None, delivered_parts=parts, now=NOW) is rows[ids[0]]
    assert rows[ids[0]].status == SmsStatus.SUBMITTED  # one part of two
    store.apply_receipt(session, DeliveryReceipt("a2", "DELIVRD"), mt_id=ids[0], delivered_parts=parts, now=NOW)
    assert rows[ids[0]].status == SmsStatus.DELIVERED
    assert (
        store.apply_receipt(session, DeliveryReceipt("zz", "DELIVRD"), mt_id=None, delivered_parts=set(), now=NOW)
        is None
    )


def test_undeliverable_receipt(session: Session) -> None:
    mt = queue.queue_mt(session, destination=MOBILE, text="x", source="2663")
    mt.status, mt.smsc_message_ids = SmsStatus.SUBMITTED, "255"
    enroute = DeliveryReceipt("ff", "ENROUTE")
    assert store.apply_receipt(session, enroute, mt_id=None, delivered_parts=set(), now=NOW) is mt
    assert mt.status == SmsStatus.SUBMITTED
    store.apply_receipt(
        session, DeliveryReceipt("FF", "UNDELIV", err="012"), mt_id=None, delivered_parts=set(), now=NOW
    )
    assert (mt.status, mt.error) == (SmsStatus.UNDELIVERABLE, "UNDELIV err:012")


def test_queue_listener_fires_after_commit_only(session: Session) -> None:
    calls: list[list[str]] = []

    def listener(rows: Sequence[queue.QueuedMt]) -> None:
        calls.append([r.text for r in rows])

    queue.add_listener(listener)
    try:
        queue.queue_mt(session, destination=MOBILE, text="a", source="2663")
        queue.queue_mt(session, destination=MOBILE, text="b", source="2663")
        assert calls == []
        session.rollback()
        assert calls == []
        queue.queue_mt(session, destination=MOBILE, text="c", source="2663")
        session.commit()
        assert calls == [["c"]]
        session.commit()
        assert calls == [["c"]]
    finally:
        queue.remove_listener(listener)


def test_a_failing_listener_does_not_break_the_commit(session: Session) -> None:
    def broken(rows: Sequence[queue.QueuedMt]) -> None:
        raise RuntimeError("listener bug")

    queue.add_listener(broken)
    try:
        queue.queue_mt(session, destination=MOBILE, text="a", source="2663")
        session.commit()
    finally:
        queue.remove_listener(broken)
    assert session.scalar(select(SmsMessage.text)) == "a"


@pytest.mark.parametrize("text", ["", "x" * 2000])
def test_queue_mt_accepts_any_text(session: Session, text: str) -> None:
    assert queue.queue_mt(session, destination=MOBILE, text=text, source="2663").status == SmsStatus.QUEUED


def test_hot_path_updates_work_on_a_plain_connection(db_url: str) -> None:
    from bridge.db import make_engine, make_session_factory

    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    with factory() as session:
        ids = [queue.queue_mt(session, destination=MOBILE, text=t, source="2663").id for t in ("a", "b")]
        session.commit()
    with engine.connect() as connection, connection.begin():
        store.settle(connection, [MessageSubmitted(i, 1, (f"m{i}",)) for i in ids], NOW, lambda at: NOW)
        store.mark_delivered(connection, [ids[0]], NOW)
        store.mark_undeliverable(connection, ids[1], "UNDELIV err:001", NOW)
    with factory() as session:
        rows = list(session.scalars(select(SmsMessage).order_by(SmsMessage.id)))
    assert [(r.status, r.smsc_message_ids, r.error) for r in rows] == [
        (SmsStatus.DELIVERED, f"m{ids[0]}", ""),
        (SmsStatus.UNDELIVERABLE, f"m{ids[1]}", "UNDELIV err:001"),
    ]
    engine.dispose()


# --- crash safety of MTs (issue 13 item 4) -------------------------------------------------------------------


def _submit_part(mt_id: int, index: int = 0, total: int = 1) -> SubmitPart:
    return SubmitPart(mt_id, index, "2663", MOBILE, 0, 0, b"hi", attempt=1, total=total)


def test_a_submit_is_marked_before_it_is_written_and_stays_ambiguous_until_its_outcome_is_recorded(
    db_url: str,
) -> None:
    from bridge.db import make_engine, make_session_factory

    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    with factory() as session:
        ids = [queue.queue_mt(session, destination=MOBILE, text=t, source="2663").id for t in ("a", "b")]
        session.commit()
    with engine.connect() as connection, connection.begin():
        store.mark_submitting(connection, [(_submit_part(ids[0]), 7)], NOW)
    with factory() as session:  # a crash here: the SMSC may or may not have accepted MT a
        assert store.ambiguous_mts(session) == [(ids[0], "submitting part 1/1 as sequence 7")]
        assert [row.id for row in store.claim_queued(session, exclude=(), limit=10, now=NOW)] == ids
    with engine.connect() as connection, connection.begin():
        store.settle(connection, [MessageSubmitted(ids[0], 1, ("m1",))], NOW, lambda at: NOW)
    with factory() as session:
        assert store.ambiguous_mts(session) == []
    engine.dispose()


def test_an_accepted_part_is_recorded_at_once_and_comes_back_with_its_queued_row(db_url: str) -> None:
    from bridge.db import make_engine, make_session_factory

    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    with factory() as session:
        mt_id = queue.queue_mt(session, destination=MOBILE, text="x" * 200, source="2663").id
        session.commit()
    with engine.connect() as connection, connection.begin():
        store.mark_submitting(connection, [(_submit_part(mt_id, 0, 2), 7), (_submit_part(mt_id, 1, 2), 8)], NOW)
        store.settle(connection, [PartSubmitted(mt_id, 2, ("m1", ""), in_flight=1)], NOW, lambda at: NOW)
    with factory() as session:  # a crash here: part 1 is known accepted, part 2 is in doubt
        (row,) = store.claim_queued(session, exclude=(), limit=10, now=NOW)
        assert row.message_ids == ("m1", "")
        assert [mt for mt, _note in store.ambiguous_mts(session)] == [mt_id]
    with engine.connect() as connection, connection.begin():
        store.settle(connection, [PartSubmitted(mt_id, 2, ("m1", ""), in_flight=0)], NOW, lambda at: NOW)
    with factory() as session:  # part 2 came back throttled (say): nothing is in doubt any more
        assert store.ambiguous_mts(session) == []
        mt = session.get(SmsMessage, mt_id)
        assert mt is not None and mt.status == SmsStatus.QUEUED and mt.smsc_message_ids == "m1,"
    engine.dispose()


def test_a_repeat_the_caller_judges_new_is_recorded_again_with_a_unique_key(session: Session) -> None:
    first = mo(session)
    judged: list[bool] = []

    def not_a_redelivery() -> bool:
        judged.append(True)
        return False

    again = store.record_mo(
        session,
        source=MOBILE,
        destination="2663",
        text="UL",
        now=NOW + dt.timedelta(seconds=10),
        window_s=120.0,
        is_redelivery=not_a_redelivery,
    )
    assert first is not None and again is not None and again.id != first.id and again.dedup_key != first.dedup_key
    assert judged == [True]
    third = store.record_mo(
        session,
        source=MOBILE,
        destination="2663",
        text="UL",
        now=NOW + dt.timedelta(seconds=10),
        window_s=120.0,
        is_redelivery=lambda: False,
    )
    assert third is not None and len({first.dedup_key, again.dedup_key, third.dedup_key}) == 3
    assert (
        store.record_mo(
            session,
            source=MOBILE,
            destination="2663",
            text="UL",
            now=NOW + dt.timedelta(seconds=20),
            window_s=120.0,
            is_redelivery=lambda: True,
        )
        is None
    )
    session.commit()
