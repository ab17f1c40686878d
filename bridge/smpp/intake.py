"""The MO side of a link (glue): what the SMSC delivers (deliver_sm: MOs, their parts, delivery receipts),
persisted before it is acknowledged, and the expiry of concatenated MOs that never completed.

:meth:`Intake.record` writes one batch in one transaction and returns the status of the deliver_sm_resp
to write for it: an acknowledged MO is never lost. What a deliver_sm *is* is decided by the pure
:mod:`bridge.smpp.inbound`, whether a repeat is a redelivery by :mod:`bridge.smpp.redelivery`, which MT a
receipt settles by :mod:`bridge.smpp.delivery`; this module adds smpplib's PDU and the database.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from bridge.db.models import utcnow
from bridge.smpp import store, wire
from bridge.smpp.concat import Expired, Reassembler
from bridge.smpp.constants import DC_DEFAULT, ESME_ROK, ESME_RX_T_APPN
from bridge.smpp.context import LinkContext
from bridge.smpp.delivery import Delivered, Orphans, Undeliverable
from bridge.smpp.inbound import DeliverSm, Inbound, Mo, Part, Receipt, Undecodable, classify, decode_joined
from bridge.smpp.outbox import Outcome
from bridge.smpp.receipt import DeliveryReceipt
from bridge.smpp.redelivery import MoKey

log = logging.getLogger(__name__)

Item = tuple[Any, Inbound]  # (smpplib's deliver_sm, what it is)


def deliver_sm(pdu: Any) -> DeliverSm:
    """The fields of smpplib's deliver_sm that :func:`~bridge.smpp.inbound.classify` reads."""

    def opt_int(name: str) -> int | None:
        value = getattr(pdu, name, None)
        return value if isinstance(value, int) else None

    receipted = getattr(pdu, "receipted_message_id", None)
    payload = getattr(pdu, "message_payload", None)
    return DeliverSm(
        source=wire.text(pdu.source_addr),
        source_ton=pdu.source_addr_ton or 0,
        destination=wire.text(pdu.destination_addr),
        esm_class=pdu.esm_class or 0,
        data_coding=pdu.data_coding or DC_DEFAULT,
        short_message=pdu.short_message or b"",
        message_payload=payload if isinstance(payload, bytes) else None,
        sar_msg_ref_num=opt_int("sar_msg_ref_num"),
        sar_total_segments=opt_int("sar_total_segments"),
        sar_segment_seqnum=opt_int("sar_segment_seqnum"),
        receipted_message_id=wire.text(receipted).rstrip("\0") if receipted else None,
        message_state=opt_int("message_state"),
    )


def reply_from(destination: str, short_codes: list[str]) -> str:
    """Reply from the short code the mobile texted (the first configured one if it texted something else)."""
    return destination if destination in short_codes else short_codes[0]


@dataclass
class Recorded:
    """What :meth:`Intake.record` did with a batch."""

    status: int
    """For every deliver_sm_resp of the batch: ROK, or ``ESME_RX_T_APPN`` (not persisted: send it again)."""
    keys: dict[int, MoKey] = field(default_factory=dict)
    """deliver_sm sequence -> the MO identity it carried (for the redelivery ledger)."""
    new_mos: list[int] = field(default_factory=list)
    """MOs to hand to the command worker once the responses are written."""


class Intake:
    def __init__(self, context: LinkContext, *, link_name: str) -> None:
        self.context = context
        self.link_name = link_name
        self.orphans = Orphans()
        self.session = 0
        """The redelivery ledger's id of the current session (receiving links)."""
        self._delivered: list[int] = []
        self._undeliverable: list[tuple[int, str]] = []

    def classify(self, pdu: Any) -> Inbound:
        return classify(deliver_sm(pdu))

    def record(
        self,
        items: list[Item],
        outcomes: list[Outcome],
        mono: float,
        wall: dt.datetime,
        retry_at: Callable[[float], dt.datetime],
    ) -> Recorded:
        """Persist a batch of deliver_sm (and, on the MT hot path, the submit ``outcomes`` not recorded yet)."""
        context = self.context
        self._delivered, self._undeliverable = [], []
        rest: list[Item] = []
        for pdu, item in items:  # receipts for MTs of this process are settled in memory first
            if isinstance(item, Receipt) and self._match_receipt(item.receipt):
                context.counters["dlr"] += 1
            else:
                rest.append((pdu, item))
        recorded = Recorded(ESME_ROK)
        try:
            if not rest and not self.orphans:  # the MT hot path: plain UPDATEs on a kept connection
                with context.db.core() as connection:
                    store.settle(connection, outcomes, wall, retry_at)
                    store.mark_delivered(connection, self._delivered, wall)
                    for mt_id, error in self._undeliverable:
                        store.mark_undeliverable(connection, mt_id, error, wall)
            else:
                with context.db.transaction() as session:
                    for pdu, item in rest:
                        key = self._persist(session, item, mono, wall, recorded.new_mos, set(recorded.keys.values()))
                        if key is not None:
                            recorded.keys[pdu.sequence] = key
                    self._retry_orphans(session, mono, wall)
                    store.mark_delivered(session, self._delivered, wall)
                    for mt_id, error in self._undeliverable:
                        store.mark_undeliverable(session, mt_id, error, wall)
        except Exception:
            log.exception(
                "smpp %s: could not persist %d deliver_sm; asking the SMSC to retry", self.link_name, len(items)
            )
            self._reload_parts()
            return Recorded(ESME_RX_T_APPN)
        return recorded

    def _persist(
        self, session: Session, item: Inbound, mono: float, wall: dt.datetime, new_mos: list[int], batch: set[MoKey]
    ) -> MoKey | None:
        """Persist one deliver_sm; returns the MO identity it carried (``batch``: those earlier in the batch,
        not answered yet, so a repeat among them is the SMSC's)."""
        context = self.context
        if isinstance(item, Mo):
            return self._persist_mo(session, item, mono, wall, new_mos, batch)
        elif isinstance(item, Part):
            if not store.save_part(session, item.segment, wall):
                context.counters["duplicates"] += 1
                return None
            assembled = context.reassembler.add(item.segment, mono)
            if assembled is not None:
                store.finish_parts(session, assembled.key)
                return self._persist(session, decode_joined(assembled), mono, wall, new_mos, batch)
        elif isinstance(item, Receipt):  # not one of ours in memory: look it up
            context.counters["dlr"] += 1
            if not self._apply_receipt(session, item.receipt, wall):
                self.orphans.hold(item.receipt, mono)
        elif isinstance(item, Undecodable):
            return self._persist_undecodable(session, item, mono, wall, batch)
        return None

    def _is_redelivery(self, key: MoKey, mono: float, batch: set[MoKey]) -> Callable[[], bool]:
        return lambda: key in batch or self.context.acks.is_redelivery(key, self.session, mono)

    def _persist_mo(
        self, session: Session, item: Mo, mono: float, wall: dt.datetime, new_mos: list[int], batch: set[MoKey]
    ) -> MoKey:
        context = self.context
        key = (item.source, item.destination, item.text)
        mo = store.record_mo(
            session,
            source=item.source,
            destination=item.destination,
            text=item.text,
            now=wall,
            window_s=context.settings.dedup_window_s,
            is_redelivery=self._is_redelivery(key, mono, batch),
        )
        if mo is None:
            context.counters["duplicates"] += 1
            log.info("smpp: MO from %s is a redelivery; acknowledged, not run again", item.source)
        else:
            context.counters["mo"] += 1
            new_mos.append(mo.id)
        return key

    def _persist_undecodable(
        self, session: Session, item: Undecodable, mono: float, wall: dt.datetime, batch: set[MoKey]
    ) -> MoKey | None:
        settings = self.context.settings
        self.context.counters["invalid"] += 1
        if item.is_receipt:
            log.warning("smpp: unreadable delivery receipt from %s: %s", item.source, item.reason)
            return None
        log.warning("smpp: undecodable MO from %s: %s", item.source, item.reason)
        identity = "undecodable:" + item.raw.hex()
        key = (item.source, item.destination, identity)
        store.record_invalid_mo(
            session,
            source=item.source,
            destination=item.destination,
            text="",
            error=item.reason,
            reply=store.UNREADABLE_REPLY,
            reply_from=reply_from(item.destination, settings.short_codes),
            now=wall,
            window_s=settings.dedup_window_s,
            identity=identity,
            is_redelivery=self._is_redelivery(key, mono, batch),
        )
        return key

    # --- delivery receipts -----------------------------------------------------------------------------

    def _match_receipt(self, receipt: DeliveryReceipt) -> bool:
        """Fast path: a receipt for an MT this process submitted; written in bulk by :meth:`record`."""
        known = self.context.known_mt(receipt.message_id)
        if known is None:
            return False
        verdict = self.context.deliveries.on_receipt(receipt, *known)
        if isinstance(verdict, Delivered):
            self._delivered.append(verdict.mt_id)
        elif isinstance(verdict, Undeliverable):
            self._undeliverable.append((verdict.mt_id, verdict.error))
        return True

    def _apply_receipt(self, session: Session, receipt: DeliveryReceipt, wall: dt.datetime) -> bool:
        """Slow path: look the message id up in the database (e.g. an MT submitted before a restart)."""
        deliveries = self.context.deliveries
        mt = store.find_mt(session, receipt.message_id)
        if mt is None:
            return False
        store.apply_receipt(session, receipt, mt_id=mt.id, delivered_parts=deliveries.parts(mt.id), now=wall)
        if receipt.final and mt.status.value not in ("submitted", "queued"):
            deliveries.forget(mt.id)
        return True

    def _retry_orphans(self, session: Session, mono: float, wall: dt.datetime) -> None:
        for deadline, receipt in self.orphans.take():
            if self._match_receipt(receipt) or self._apply_receipt(session, receipt, wall):
                continue
            if not self.orphans.keep(deadline, receipt, mono):
                log.warning("smpp: delivery receipt for unknown message id %s (%s)", receipt.message_id, receipt.stat)

    # --- concatenated MOs ------------------------------------------------------------------------------

    def expire_parts(self, now: float) -> None:
        """Concatenated MOs whose parts stopped coming: recorded as invalid, answered with a reply."""
        context = self.context
        expired = context.reassembler.expire(now)
        if expired:
            with context.db.transaction() as session:
                for message in expired:
                    self._expire_one(session, message)

    def _expire_one(self, session: Session, message: Expired) -> None:
        settings = self.context.settings
        source, destination, _ref, total = message.key
        decoded = decode_joined(message)
        text = decoded.text if isinstance(decoded, Mo) else ""
        error = f"incomplete concatenated MO: parts {','.join(map(str, message.received))} of {total} arrived"
        log.warning("smpp: %s from %s", error, source)
        store.finish_parts(session, message.key)
        self.context.counters["invalid"] += 1
        store.record_invalid_mo(
            session,
            source=source,
            destination=destination,
            text=text,
            error=error,
            reply=store.INCOMPLETE_REPLY,
            reply_from=reply_from(destination, settings.short_codes),
            now=utcnow(),
            window_s=settings.dedup_window_s,
            identity=f"incomplete:{message.key[2]}:{total}:{message.payload.hex()}",
        )

    def _reload_parts(self) -> None:
        """After a failed transaction the reassembler may hold parts the database does not: rebuild it."""
        context = self.context
        try:
            with context.db.transaction() as session:
                parts = store.load_parts(session)
        except Exception:
            log.exception("smpp: could not reload MO parts")
            return
        context.reassembler = Reassembler(context.settings.reassembly_timeout_s)
        now = context.clock()
        for segment in parts:
            context.reassembler.add(segment, now)
