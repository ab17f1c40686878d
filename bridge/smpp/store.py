"""Database side of the SMPP service: persisting MOs (with de-duplication), parts of concatenated MOs,
handling an MO with the command language, and settling MTs (submit results, delivery receipts).

Every function works inside the caller's session and does not commit: the glue owns transactions, so
that "MO persisted" commits before deliver_sm_resp and "MO handled + reply queued" commit together.

An MT's submit is bracketed by two commits (issue 13 item 4): :func:`mark_submitting` before the
submit_sm is written (the row's ``error`` says which part went out as which sequence number), and
:func:`settle` of the submit_sm_resp, each accepted part's message id at once. A row still marked
"submitting" after a restart is one whose submit the SMSC may or may not have accepted
(:func:`ambiguous_mts`); parts with a recorded id are never submitted again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Table, and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from bridge.config import Config
from bridge.db.models import SmsDirection, SmsMessage, SmsPart, SmsStatus
from bridge.smpp.concat import Segment, SegmentKey
from bridge.smpp.outbox import MessageFailed, MessageRetrying, MessageSubmitted, Outcome, PartSubmitted, SubmitPart
from bridge.smpp.queue import QueuedMt, queue_mt
from bridge.smpp.receipt import DeliveryReceipt, id_candidates

log = logging.getLogger(__name__)
_SMS: Table = SmsMessage.__table__  # type: ignore[assignment]  # Core table for the executemany paths that run at MT rate

UNREADABLE_REPLY = "Sorry, we could not read your message. Send HELP for the list of commands."
INCOMPLETE_REPLY = "Sorry, part of your message did not arrive. Please send it again."
FAILED_REPLY = "Sorry, your message could not be processed. Please try again later."
SUBMITTING = "submitting"
"""Prefix of the ``error`` of an MT whose submit_sm may be at the SMSC with no outcome recorded yet."""


class CommandOutcome(Protocol):
    """What :func:`bridge.commands.execute` returns (CONTRACTS §1)."""

    @property
    def reply(self) -> str: ...
    @property
    def actions(self) -> tuple[Any, ...]: ...
    @property
    def command(self) -> str: ...
    @property
    def subscriber_id(self) -> int | None: ...


Execute = Callable[..., CommandOutcome]


def dedup_key(source: str, destination: str, text: str, bucket: int) -> str:
    digest = hashlib.sha256(f"{destination}\x00{text}".encode()).hexdigest()[:24]
    return f"mo:{source}:{digest}:{bucket}"


def record_mo(
    session: Session,
    *,
    source: str,
    destination: str,
    text: str,
    now: dt.datetime,
    window_s: float,
    status: SmsStatus = SmsStatus.RECEIVED,
    error: str = "",
    identity: str | None = None,
    is_redelivery: Callable[[], bool] | None = None,
) -> SmsMessage | None:
    """Persist an MO; ``None`` if it is a redelivery of one that arrived within ``window_s``.

    SMPP 3.4 gives an MO no identity an SMSC keeps across redeliveries (sequence numbers restart with
    every bind, which is exactly when redeliveries happen), so the identity is source + destination +
    text within a time window. The key carries the window's bucket; the previous bucket is checked too.
    ``identity`` replaces the text in that key when the text is not what identifies the MO (undecodable).
    A repeat within the window is a redelivery unless ``is_redelivery`` (asked only then; see
    :mod:`bridge.smpp.redelivery`) says it is a person's new message; without it every repeat is one.
    """
    epoch = (now - dt.datetime(1970, 1, 1)).total_seconds()
    bucket = int(epoch // window_s)
    identity = text if identity is None else identity
    keys = [dedup_key(source, destination, identity, b) for b in (bucket, bucket - 1)]
    # Each key and its suffixed forms (``key:<ms>[:n]``, below) in one range of the unique index (";" follows ":").
    ranges = [and_(SmsMessage.dedup_key >= key, SmsMessage.dedup_key < key + ";") for key in keys]
    seen = session.execute(select(SmsMessage.dedup_key, SmsMessage.created_at).where(or_(*ranges))).all()
    if any(created >= now - dt.timedelta(seconds=window_s) for _key, created in seen):
        if is_redelivery is None or is_redelivery():
            return None
    taken = {key for key, _created in seen}
    if keys[0] in taken:  # an earlier one in this bucket (outside the window, or a new message): stay unique
        base = candidate = f"{keys[0]}:{int(epoch * 1000)}"
        n = 1
        while candidate in taken:
            n += 1
            candidate = f"{base}:{n}"
        keys[0] = candidate
    message = SmsMessage(
        direction=SmsDirection.MO,
        status=status,
        source=source[:32],
        destination=destination[:32],
        text=text,
        dedup_key=keys[0][:128],
        error=error[:255],
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    session.flush()
    return message


def record_invalid_mo(
    session: Session,
    *,
    source: str,
    destination: str,
    text: str,
    error: str,
    reply: str,
    reply_from: str,
    now: dt.datetime,
    window_s: float,
    identity: str,
    is_redelivery: Callable[[], bool] | None = None,
) -> SmsMessage | None:
    """Persist an MO we could not use (undecodable, incomplete) and queue a polite reply when possible."""
    message = record_mo(
        session,
        source=source,
        destination=destination,
        text=text,
        now=now,
        window_s=window_s,
        status=SmsStatus.INVALID,
        error=error,
        identity=identity,
        is_redelivery=is_redelivery,
    )
    if message is not None and source:
        queue_mt(session, destination=source, text=reply, source=reply_from, reply_to_id=message.id)
    return message


def save_part(session: Session, segment: Segment, now: dt.datetime) -> bool:
    """Persist one part of a concatenated MO; ``False`` if that part was already received (redelivery)."""
    exists = session.scalar(
        select(SmsPart.id).where(
            SmsPart.source == segment.source[:32],
            SmsPart.destination == segment.destination[:32],
            SmsPart.ref == segment.ref,
            SmsPart.total == segment.total,
            SmsPart.seq == segment.seq,
        )
    )
    if exists is not None:
        return False
    session.add(
        SmsPart(
            source=segment.source[:32],
            destination=segment.destination[:32],
            ref=segment.ref,
            total=segment.total,
            seq=segment.seq,
            data_coding=segment.data_coding,
            payload=segment.payload.hex(),
            received_at=now,
        )
    )
    session.flush()
    return True


def finish_parts(session: Session, key: SegmentKey) -> None:
    """Mark the parts of a reassembled (or expired) message done; kept a while to spot redeliveries."""
    source, destination, ref, total = key
    session.execute(
        update(SmsPart)
        .where(
            SmsPart.source == source[:32],
            SmsPart.destination == destination[:32],
            SmsPart.ref == ref,
            SmsPart.total == total,
        )
        .values(done=True)
    )


def purge_parts(session: Session, older_than: dt.datetime) -> None:
    session.query(SmsPart).filter(SmsPart.done.is_(True), SmsPart.received_at < older_than).delete()


def load_parts(session: Session) -> list[Segment]:
    """Parts still waiting for the rest of their message (reloaded into the reassembler on start)."""
    rows = session.scalars(select(SmsPart).where(SmsPart.done.is_(False)).order_by(SmsPart.id))
    return [
        Segment(r.source, r.destination, r.ref, r.total, r.seq, r.data_coding, bytes.fromhex(r.payload)) for r in rows
    ]


def received_mo_ids(session: Session) -> list[int]:
    """MOs persisted and acknowledged but not handled yet (e.g. a crash in between)."""
    return list(
        session.scalars(
            select(SmsMessage.id)
            .where(SmsMessage.direction == SmsDirection.MO, SmsMessage.status == SmsStatus.RECEIVED)
            .order_by(SmsMessage.id)
        )
    )


def handle_mo(session: Session, mo_id: int, *, execute: Execute, config: Config, now: dt.datetime) -> tuple[Any, ...]:
    """Run the command language on a RECEIVED MO: mark it HANDLED/REFUSED and queue the reply MT."""
    mo = session.get(SmsMessage, mo_id)
    if mo is None or mo.status is not SmsStatus.RECEIVED:
        return ()
    result = execute(session, sender=mo.source, text=mo.text, config=config, now=now)
    mo.status = SmsStatus.HANDLED if result.subscriber_id is not None else SmsStatus.REFUSED
    mo.subscriber_id = result.subscriber_id
    mo.command = (result.command or "")[:8]
    mo.updated_at = now
    if result.reply:
        queue_mt(session, destination=mo.source, text=result.reply, source=reply_source(mo, config), reply_to_id=mo.id)
    return tuple(result.actions)


def fail_mo(session: Session, mo_id: int, *, error: str, config: Config, now: dt.datetime) -> None:
    """The command language failed on this MO: record why and apologise (it is not retried)."""
    mo = session.get(SmsMessage, mo_id)
    if mo is None or mo.status is not SmsStatus.RECEIVED:
        return
    mo.status = SmsStatus.INVALID
    mo.error = error[:255]
    mo.updated_at = now
    if mo.source:
        queue_mt(session, destination=mo.source, text=FAILED_REPLY, source=reply_source(mo, config), reply_to_id=mo.id)


def reply_source(mo: SmsMessage, config: Config) -> str:
    """Reply from the short code the mobile texted (the first configured one if it texted something else)."""
    codes = config.smpp.short_codes
    return mo.destination if mo.destination in codes else codes[0]


def claim_queued(session: Session, *, exclude: Iterable[int], limit: int, now: dt.datetime) -> list[QueuedMt]:
    """QUEUED MTs due now, oldest first, not already in the outbox (plain rows: this runs at MT rate)."""
    query = (
        select(SmsMessage.id, SmsMessage.source, SmsMessage.destination, SmsMessage.text, SmsMessage.smsc_message_ids)
        .where(
            SmsMessage.direction == SmsDirection.MT,
            SmsMessage.status == SmsStatus.QUEUED,
            or_(SmsMessage.next_attempt_at.is_(None), SmsMessage.next_attempt_at <= now),
        )
        .order_by(SmsMessage.id)
        .limit(limit)
    )
    excluded = list(exclude)
    if excluded:
        query = query.where(SmsMessage.id.not_in(excluded))
    return [
        QueuedMt(mt_id, source, dest, text, tuple(ids.split(",")) if ids else ())
        for mt_id, source, dest, text, ids in session.execute(query)
    ]


def mark_submitting(session: Session | Connection, submits: Sequence[tuple[SubmitPart, int]], now: dt.datetime) -> None:
    """Before the submit_sm of these parts (with their sequence numbers) is written: from the commit on, a
    crash leaves the row saying its submit may have reached the SMSC. One executemany per loop turn."""
    if submits:
        statement = (
            update(_SMS)
            .where(_SMS.c.id == bindparam("v_id"), _SMS.c.status == SmsStatus.QUEUED.value)
            .values(error=bindparam("v_error"), updated_at=bindparam("v_now"))
        )
        rows = [
            {"v_id": p.mt_id, "v_error": f"{SUBMITTING} part {p.index + 1}/{p.total} as sequence {seq}", "v_now": now}
            for p, seq in submits
        ]
        session.execute(statement, rows)


def ambiguous_mts(session: Session) -> list[tuple[int, str]]:
    """MTs (id, note) left "submitting" by a crash: the SMSC may have accepted them. Run before binding."""
    query = (
        select(SmsMessage.id, SmsMessage.error)
        .where(
            SmsMessage.direction == SmsDirection.MT,
            SmsMessage.status == SmsStatus.QUEUED,
            SmsMessage.error.like(f"{SUBMITTING} %"),
        )
        .order_by(SmsMessage.id)
    )
    return [(mt_id, error) for mt_id, error in session.execute(query)]


def fail_mt(session: Session, mt_id: int, error: str, now: dt.datetime) -> None:
    session.execute(
        update(SmsMessage)
        .where(SmsMessage.id == mt_id)
        .values(status=SmsStatus.FAILED, error=error[:255], updated_at=now)
    )


def settle(
    session: Session | Connection,
    outcomes: Sequence[Outcome],
    now: dt.datetime,
    retry_at: Callable[[float], dt.datetime],
) -> None:
    """Write what submit responses settled: SUBMITTED with message ids, FAILED with the error, or retrying;
    and the id of each accepted part of a message not complete yet (it stays QUEUED, "submitting" while
    another of its parts is in flight).

    One executemany per kind of outcome: at hundreds of MTs per second, per-row ORM updates dominate.
    """
    submitted = [
        {
            "id": o.mt_id,
            "status": SmsStatus.SUBMITTED,
            "smsc_message_ids": ",".join(o.message_ids)[:255],
            "attempts": o.attempts,
            "error": "",
            "updated_at": now,
        }
        for o in outcomes
        if isinstance(o, MessageSubmitted)
    ]
    failed = [
        {"id": o.mt_id, "status": SmsStatus.FAILED, "error": o.error[:255], "attempts": o.attempts, "updated_at": now}
        for o in outcomes
        if isinstance(o, MessageFailed)
    ]
    retrying = [
        {
            "id": o.mt_id,
            "error": f"retrying after 0x{o.status:02X}",
            "attempts": o.attempts,
            "next_attempt_at": retry_at(o.retry_at),
            "updated_at": now,
        }
        for o in outcomes
        if isinstance(o, MessageRetrying)
    ]
    partial = [
        {
            "id": o.mt_id,
            "smsc_message_ids": ",".join(o.message_ids)[:255],
            "attempts": o.attempts,
            "updated_at": now,
            **({} if o.in_flight else {"error": ""}),
        }
        for o in outcomes
        if isinstance(o, PartSubmitted)
    ]
    partial_busy = [row for row in partial if "error" not in row]
    partial_idle = [row for row in partial if "error" in row]
    for rows in (submitted, failed, retrying, partial_busy, partial_idle):
        if rows:
            values: dict[str, Any] = {key: bindparam(f"v_{key}") for key in rows[0] if key != "id"}
            statement = update(_SMS).where(_SMS.c.id == bindparam("v_id")).values(**values)
            session.execute(statement, [{f"v_{key}": value for key, value in row.items()} for row in rows])


def mark_delivered(session: Session | Connection, mt_ids: Sequence[int], now: dt.datetime) -> None:
    """Every part of these MTs was reported delivered (receipts matched in memory by the service)."""
    if mt_ids:
        session.execute(
            update(_SMS)
            .where(_SMS.c.id.in_(mt_ids), _SMS.c.status == SmsStatus.SUBMITTED.value)
            .values(status=SmsStatus.DELIVERED.value, updated_at=now)
        )


def mark_undeliverable(session: Session | Connection, mt_id: int, error: str, now: dt.datetime) -> None:
    session.execute(
        update(_SMS)
        .where(_SMS.c.id == mt_id, _SMS.c.status.in_([SmsStatus.SUBMITTED.value, SmsStatus.DELIVERED.value]))
        .values(status=SmsStatus.UNDELIVERABLE.value, error=error[:255], updated_at=now)
    )


def find_mt(session: Session, message_id: str) -> SmsMessage | None:
    """The MT an SMSC message id belongs to (ids are stored comma-separated, one per part)."""
    for candidate in id_candidates(message_id):
        found = session.scalar(
            select(SmsMessage)
            .where(
                SmsMessage.direction == SmsDirection.MT,
                or_(
                    SmsMessage.smsc_message_ids == candidate,
                    SmsMessage.smsc_message_ids.like(f"{candidate},%"),
                    SmsMessage.smsc_message_ids.like(f"%,{candidate}"),
                    SmsMessage.smsc_message_ids.like(f"%,{candidate},%"),
                ),
            )
            .order_by(SmsMessage.id.desc())
            .limit(1)
        )
        if found is not None:
            return found
    return None


def apply_receipt(
    session: Session, receipt: DeliveryReceipt, *, mt_id: int | None, delivered_parts: set[str], now: dt.datetime
) -> SmsMessage | None:
    """Apply a delivery receipt to its MT (looked up by id unless ``mt_id`` is known).

    ``delivered_parts`` collects the ids of parts reported delivered; the MT is DELIVERED once every part
    is, UNDELIVERABLE as soon as one part finally fails. Intermediate states change nothing.
    """
    mt = session.get(SmsMessage, mt_id) if mt_id is not None else find_mt(session, receipt.message_id)
    if mt is None:
        return None
    if not receipt.final or mt.status in (SmsStatus.UNDELIVERABLE, SmsStatus.FAILED):
        return mt
    if receipt.delivered:
        delivered_parts.add(receipt.message_id)
        if mt.status is SmsStatus.QUEUED:  # a part of a message not fully submitted yet: counted, no more
            return mt
        ids = [i for i in mt.smsc_message_ids.split(",") if i]
        if len(delivered_parts) >= max(1, len(ids)):
            mt.status = SmsStatus.DELIVERED
    else:
        mt.status = SmsStatus.UNDELIVERABLE
        mt.error = f"{receipt.stat} err:{receipt.err}"[:255]
    mt.updated_at = now
    return mt
