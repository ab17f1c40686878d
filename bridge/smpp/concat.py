"""Concatenated short messages: splitting an MT with a User Data Header, and reassembling MO parts.

3GPP TS 23.040 §9.2.3.24.1/.8: information element 0x00 (8-bit reference) or 0x08 (16-bit reference)
carries ``ref, total, seq``; SMPP 3.4 §5.3.2.22-24 carries the same in the ``sar_*`` TLVs instead.
Splitting picks GSM 03.38 when every character fits, else UCS2, and never cuts an escape pair or a
surrogate pair in two. Reassembly is keyed by ``(source, destination, ref, total)``; a part seen twice
(SMSC redelivery) counts once; parts still incomplete ``timeout_s`` after the first one arrived expire.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from bridge.smpp.constants import DC_DEFAULT, DC_UCS2, ESM_UDHI
from bridge.smpp.errors import DecodeError, EncodingError
from bridge.smpp.gsm import encode_ucs2, gsm_codes

IEI_CONCAT_8 = 0x00
IEI_CONCAT_16 = 0x08

GSM_SINGLE_SEPTETS = 160
GSM_PART_SEPTETS = 153  # 160 - 7 septets taken by the 6-octet UDH
UCS2_SINGLE_UNITS = 70
UCS2_PART_UNITS = 67  # (140 - 6) / 2
MAX_PARTS = 255


@dataclass(frozen=True)
class ConcatRef:
    """Where a part sits in its concatenated message."""

    ref: int
    total: int
    seq: int


@dataclass(frozen=True)
class EncodedMessage:
    """An MT ready for submit_sm: one ``short_message`` per part (UDH included when split)."""

    data_coding: int
    esm_class: int
    parts: tuple[bytes, ...]


def split_udh(short_message: bytes) -> tuple[bytes, bytes]:
    """``short_message`` with UDHI set -> ``(udh including its length octet, user data)``."""
    if not short_message:
        raise DecodeError("UDHI is set but the short message is empty")
    length = short_message[0]
    if 1 + length > len(short_message):
        raise DecodeError(f"UDH length {length} exceeds the short message ({len(short_message) - 1} octets)")
    return short_message[: 1 + length], short_message[1 + length :]


def parse_udh(udh: bytes) -> list[tuple[int, bytes]]:
    """UDH (with its length octet) -> list of ``(iei, data)`` information elements."""
    if not udh or udh[0] != len(udh) - 1:
        raise DecodeError("UDH length octet does not match the header")
    elements: list[tuple[int, bytes]] = []
    pos = 1
    while pos < len(udh):
        if pos + 2 > len(udh):
            raise DecodeError(f"UDH has a truncated information element at offset {pos}")
        iei, length = udh[pos], udh[pos + 1]
        if pos + 2 + length > len(udh):
            raise DecodeError(f"UDH information element 0x{iei:02X} is truncated ({length} octets announced)")
        elements.append((iei, udh[pos + 2 : pos + 2 + length]))
        pos += 2 + length
    return elements


def concat_ref(udh: bytes) -> ConcatRef | None:
    """The concatenation element of a UDH, or ``None`` when the message is not concatenated."""
    for iei, data in parse_udh(udh):
        if iei == IEI_CONCAT_8 and len(data) == 3:
            return check_ref(ConcatRef(ref=data[0], total=data[1], seq=data[2]))
        if iei == IEI_CONCAT_16 and len(data) == 4:
            ref16, total, seq = struct.unpack(">HBB", data)
            return check_ref(ConcatRef(ref=ref16, total=total, seq=seq))
        if iei in (IEI_CONCAT_8, IEI_CONCAT_16):
            raise DecodeError(f"concatenation element 0x{iei:02X} has length {len(data)}")
    return None


def check_ref(ref: ConcatRef) -> ConcatRef:
    if not 1 <= ref.seq <= ref.total:
        raise DecodeError(f"concatenation part {ref.seq} of {ref.total} is out of range")
    return ref


def encode_message(text: str, *, ref: int) -> EncodedMessage:
    """Encode an MT: GSM 03.38 when every character fits, else UCS2; split with an 8-bit UDH ``ref``."""
    codes = gsm_codes(text)
    if codes is not None:
        if sum(len(c) for c in codes) <= GSM_SINGLE_SEPTETS:
            return EncodedMessage(DC_DEFAULT, 0, (b"".join(codes),))
        return _split(DC_DEFAULT, [(c, len(c)) for c in codes], GSM_PART_SEPTETS, ref)
    units = [(encode_ucs2(ch), 2 if ord(ch) > 0xFFFF else 1) for ch in text]
    if sum(n for _, n in units) <= UCS2_SINGLE_UNITS:
        return EncodedMessage(DC_UCS2, 0, (b"".join(c for c, _ in units),))
    return _split(DC_UCS2, units, UCS2_PART_UNITS, ref)


def _split(data_coding: int, chars: list[tuple[bytes, int]], per_part: int, ref: int) -> EncodedMessage:
    chunks: list[bytes] = []
    current: list[bytes] = []
    used = 0
    for code, size in chars:
        if used + size > per_part:
            chunks.append(b"".join(current))
            current, used = [], 0
        current.append(code)
        used += size
    chunks.append(b"".join(current))
    if len(chunks) > MAX_PARTS:
        raise EncodingError(f"text needs {len(chunks)} parts; at most {MAX_PARTS} can be concatenated")
    total = len(chunks)
    parts = tuple(bytes([5, IEI_CONCAT_8, 3, ref & 0xFF, total, seq]) + chunk for seq, chunk in enumerate(chunks, 1))
    return EncodedMessage(data_coding, ESM_UDHI, parts)


# --- reassembly ------------------------------------------------------------------------------------------

SegmentKey = tuple[str, str, int, int]


@dataclass(frozen=True)
class Segment:
    """One received part of a concatenated MO (user data without UDH, still encoded)."""

    source: str
    destination: str
    ref: int
    total: int
    seq: int
    data_coding: int
    payload: bytes

    @property
    def key(self) -> SegmentKey:
        return (self.source, self.destination, self.ref, self.total)


@dataclass(frozen=True)
class Assembled:
    """Every part arrived: ``payload`` is the user data of parts 1..total joined."""

    key: SegmentKey
    data_coding: int
    payload: bytes


@dataclass(frozen=True)
class Expired:
    """The timeout passed with parts missing; ``payload`` joins the parts that did arrive, in order."""

    key: SegmentKey
    data_coding: int
    payload: bytes
    received: tuple[int, ...]


@dataclass
class _Pending:
    first_at: float
    data_coding: int
    parts: dict[int, bytes] = field(default_factory=dict)


class Reassembler:
    """Collects MO parts until a message is complete or ``timeout_s`` after its first part."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._pending: dict[SegmentKey, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, segment: Segment, now: float) -> Assembled | None:
        """Add a part; returns the whole message when this part completes it. A repeated part is ignored."""
        if not 1 <= segment.seq <= segment.total:
            raise DecodeError(f"concatenation part {segment.seq} of {segment.total} is out of range")
        pending = self._pending.get(segment.key)
        if pending is None:
            pending = self._pending[segment.key] = _Pending(first_at=now, data_coding=segment.data_coding)
        pending.parts.setdefault(segment.seq, segment.payload)
        if len(pending.parts) < segment.total:
            return None
        del self._pending[segment.key]
        payload = b"".join(pending.parts[i] for i in range(1, segment.total + 1))
        return Assembled(segment.key, pending.data_coding, payload)

    def expire(self, now: float) -> list[Expired]:
        """Drop and return every message whose first part is older than the timeout."""
        expired: list[Expired] = []
        for key, pending in list(self._pending.items()):
            if now - pending.first_at >= self.timeout_s:
                del self._pending[key]
                seqs = tuple(sorted(pending.parts))
                payload = b"".join(pending.parts[s] for s in seqs)
                expired.append(Expired(key, pending.data_coding, payload, seqs))
        return expired

    def next_deadline(self) -> float | None:
        """When the oldest incomplete message expires (``None`` if nothing is pending)."""
        if not self._pending:
            return None
        return min(p.first_at for p in self._pending.values()) + self.timeout_s
