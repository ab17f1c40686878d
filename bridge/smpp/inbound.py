"""What a deliver_sm from the SMSC is: an MO text, one part of a concatenated MO, a delivery receipt,
or something we cannot read (SMPP 3.4 §4.6.1, §5.2.12 esm_class, §5.3.2.32 message_payload, §5.3.2.22-24
sar_* TLVs). Pure: the glue turns smpplib's PDU into :class:`DeliverSm` and acts on the result."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.smpp.concat import Assembled, ConcatRef, Expired, Segment, check_ref, concat_ref, split_udh
from bridge.smpp.constants import ESM_DELIVERY_RECEIPT, ESM_MESSAGE_TYPE_MASK, ESM_UDHI, TON_INTERNATIONAL
from bridge.smpp.errors import DecodeError
from bridge.smpp.gsm import decode_text
from bridge.smpp.receipt import DeliveryReceipt


@dataclass(frozen=True)
class DeliverSm:
    """The fields of a deliver_sm we use, addresses already as text."""

    source: str
    destination: str
    esm_class: int
    data_coding: int
    short_message: bytes
    source_ton: int = 0
    message_payload: bytes | None = None
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    receipted_message_id: str | None = None
    message_state: int | None = None


@dataclass(frozen=True)
class Inbound:
    """Base of the classification results."""

    source: str
    destination: str


@dataclass(frozen=True)
class Mo(Inbound):
    text: str


@dataclass(frozen=True)
class Part(Inbound):
    segment: Segment


@dataclass(frozen=True)
class Receipt(Inbound):
    receipt: DeliveryReceipt


@dataclass(frozen=True)
class Undecodable(Inbound):
    reason: str
    is_receipt: bool = False
    raw: bytes = b""
    """The undecodable user data (identifies a redelivery of the same bytes)."""


def source_address(ton: int, address: str) -> str:
    """International numbers are stored in E.164 (``+`` prefix); others as the SMSC sent them."""
    address = address.strip()
    if ton == TON_INTERNATIONAL and address.isdigit():
        return "+" + address
    return address


def classify(pdu: DeliverSm) -> Inbound:
    """Never raises for bad content: what cannot be read comes back as :class:`Undecodable`."""
    source = source_address(pdu.source_ton, pdu.source)
    dest = pdu.destination.strip()
    data = pdu.short_message or pdu.message_payload or b""
    if pdu.esm_class & ESM_MESSAGE_TYPE_MASK == ESM_DELIVERY_RECEIPT:
        try:
            receipt = DeliveryReceipt.parse(
                data.decode("latin-1"),
                receipted_message_id=pdu.receipted_message_id,
                message_state=pdu.message_state,
            )
        except DecodeError as exc:
            return Undecodable(source, dest, str(exc), is_receipt=True)
        return Receipt(source, dest, receipt)
    try:
        ref: ConcatRef | None = None
        if pdu.esm_class & ESM_UDHI:
            udh, data = split_udh(data)
            ref = concat_ref(udh)
        elif pdu.sar_msg_ref_num is not None and pdu.sar_total_segments and pdu.sar_segment_seqnum:
            ref = check_ref(ConcatRef(pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum))
        if ref is not None and ref.total > 1:
            segment = Segment(source, dest, ref.ref, ref.total, ref.seq, pdu.data_coding, data)
            return Part(source, dest, segment)
        return Mo(source, dest, decode_text(pdu.data_coding, data))
    except DecodeError as exc:
        return Undecodable(source, dest, str(exc), raw=bytes([pdu.data_coding]) + data)


def decode_joined(message: Assembled | Expired) -> Mo | Undecodable:
    """Decode the user data of a reassembled (or expired, partial) concatenated MO."""
    source, dest = message.key[0], message.key[1]
    try:
        return Mo(source, dest, decode_text(message.data_coding, message.payload))
    except DecodeError as exc:
        return Undecodable(source, dest, str(exc), raw=bytes([message.data_coding]) + message.payload)
