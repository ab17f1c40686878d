"""Hand-rolled encoders for the few PDUs on the MT hot path, byte-identical to smpplib's.

smpplib builds every PDU by walking ~45 parameter descriptors (``field_is_optional`` and friends): about
half of the ESME's CPU per MT at hundreds of MT/s. submit_sm and the empty responses have a fixed layout
(SMPP 3.4 §4.4.1, §4.6.2, §4.11.2, §4.3.1), so they are packed directly here; ``tests/smpp/test_wire.py``
checks every encoder against smpplib's output, and everything else (binds, deliver_sm parsing, TLVs)
stays with smpplib.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM_RESP = 0x80000005
ENQUIRE_LINK_RESP = 0x80000015
UNBIND_RESP = 0x80000006
GENERIC_NACK = 0x80000000

_HEADER = struct.Struct(">LLLL")


def text(value: Any) -> str:
    """A C-Octet String field as smpplib hands it over (bytes, ``str`` or ``None``), as text."""
    if value is None:
        return ""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _cstring(text: str, size: int) -> bytes:
    """C-Octet String of at most ``size`` octets including the NUL (smpplib truncates the same way)."""
    return text[: size - 1].encode("latin-1") + b"\0"


def submit_sm(
    sequence: int,
    *,
    source_ton: int,
    source_npi: int,
    source: str,
    dest_ton: int,
    dest_npi: int,
    destination: str,
    esm_class: int,
    registered_delivery: int,
    data_coding: int,
    short_message: bytes,
) -> bytes:
    """A submit_sm with no TLVs, service_type "", protocol_id/priority 0, no schedule or validity."""
    if len(short_message) > 254:
        raise ValueError("short_message longer than 254 octets")
    body = b"".join(
        (
            b"\0",  # service_type
            bytes((source_ton, source_npi)),
            _cstring(source, 21),
            bytes((dest_ton, dest_npi)),
            _cstring(destination, 21),
            bytes((esm_class, 0, 0)),  # esm_class, protocol_id, priority_flag
            b"\0\0",  # schedule_delivery_time, validity_period
            bytes((registered_delivery, 0, data_coding, 0, len(short_message))),
            short_message,
        )
    )
    return _HEADER.pack(16 + len(body), SUBMIT_SM, 0, sequence) + body


def response(command_id: int, sequence: int, status: int = 0) -> bytes:
    """An empty-bodied response: deliver_sm_resp (with its empty message_id), enquire_link_resp, generic_nack."""
    body = b"\0" if command_id == DELIVER_SM_RESP else b""
    return _HEADER.pack(16 + len(body), command_id, status, sequence) + body


@dataclass(frozen=True)
class SubmitSmResp:
    """A parsed submit_sm_resp, with the attributes the glue reads from smpplib PDUs."""

    sequence: int
    status: int
    message_id: str
    command: str = "submit_sm_resp"


def parse_submit_sm_resp(raw: bytes) -> SubmitSmResp:
    """``raw`` is a whole PDU whose command_id is submit_sm_resp; the body may be empty on errors."""
    _length, _command, status, sequence = _HEADER.unpack_from(raw)
    body = raw[16:]
    end = body.find(b"\0")
    message_id = (body if end < 0 else body[:end]).decode("latin-1")
    return SubmitSmResp(sequence, status, message_id)
