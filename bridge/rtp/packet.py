"""RTP and RTCP packets (RFC 3550 §5.1, §6.4-6.6): ``parse(data)`` classmethods and ``__bytes__``.

Every length is checked before slicing; a bad packet raises :class:`~bridge.rtp.errors.PacketError` with a
precise message and nothing else. Parsing strips RTP padding, so ``parse(bytes(p)) == p`` for any packet we
build. The endpoint's per-packet receive path does not build these objects (it reads the fixed header with
one ``struct.unpack_from``); they serve RTCP, tests and tools.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from bridge.rtp.errors import PacketError

__all__ = [
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "RtcpBye",
    "RtcpPacket",
    "RtcpReceiverReport",
    "RtcpReportBlock",
    "RtcpSdes",
    "RtcpSenderReport",
    "RtcpUnknown",
    "RtpPacket",
    "is_rtcp",
    "parse_rtcp",
]

RTP_VERSION = 2
RTP_HEADER = struct.Struct("!BBHII")
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
SDES_CNAME = 1
_RTCP_HEADER = struct.Struct("!BBH")
_REPORT_BLOCK = struct.Struct("!IBBHIIII")  # ssrc, fraction, lost (24 bit as 8+16), highest, jitter, lsr, dlsr


@dataclass(eq=True)
class RtpPacket:
    """One RTP packet. ``payload`` excludes padding; ``extension`` is ``(profile, data)`` or None."""

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = b""
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extension: tuple[int, bytes] | None = None

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < RTP_HEADER.size:
            raise PacketError(f"RTP packet length is less than {RTP_HEADER.size} bytes ({len(data)})")
        first, second, seq, timestamp, ssrc = RTP_HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise PacketError(f"RTP packet has version {first >> 6}, expected {RTP_VERSION}")
        end = len(data)
        if first & 0x20:
            if end == RTP_HEADER.size:
                raise PacketError("RTP packet has padding bit but no padding")
            padding = data[-1]
            if padding == 0 or padding > end - RTP_HEADER.size:
                raise PacketError(f"RTP packet has invalid padding length {padding}")
            end -= padding
        pos = RTP_HEADER.size
        cc = first & 0x0F
        if pos + 4 * cc > end:
            raise PacketError("RTP packet has truncated CSRC")
        csrc = list(struct.unpack_from(f"!{cc}I", data, pos))
        pos += 4 * cc
        extension = None
        if first & 0x10:
            if pos + 4 > end:
                raise PacketError("RTP packet has truncated extension profile / length")
            profile, words = struct.unpack_from("!HH", data, pos)
            pos += 4
            if pos + 4 * words > end:
                raise PacketError("RTP packet has truncated extension value")
            extension = (profile, bytes(data[pos : pos + 4 * words]))
            pos += 4 * words
        return cls(
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[pos:end]),
            marker=bool(second & 0x80),
            csrc=csrc,
            extension=extension,
        )

    def __bytes__(self) -> bytes:
        first = (RTP_VERSION << 6) | len(self.csrc)
        if self.extension is not None:
            first |= 0x10
        data = RTP_HEADER.pack(
            first,
            (0x80 if self.marker else 0) | (self.payload_type & 0x7F),
            self.sequence_number & 0xFFFF,
            self.timestamp & 0xFFFFFFFF,
            self.ssrc & 0xFFFFFFFF,
        )
        if self.csrc:
            data += struct.pack(f"!{len(self.csrc)}I", *self.csrc)
        if self.extension is not None:
            profile, value = self.extension
            if len(value) % 4:
                raise ValueError("RTP header extension length must be a multiple of 4 bytes")
            data += struct.pack("!HH", profile, len(value) // 4) + value
        return data + self.payload


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4 demultiplexing: RTCP packet types 192-223 occupy the RTP marker+payload-type byte."""
    return len(data) >= 2 and 192 <= data[1] <= 223


# --- RTCP --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RtcpReportBlock:
    """Reception report about one source (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int
    """Fraction lost since the previous report, in 1/256."""
    packets_lost: int
    """Cumulative packets lost (signed 24 bit: duplicates can make it negative)."""
    highest_sequence: int
    """Extended highest sequence number received."""
    jitter: int
    """Interarrival jitter in timestamp units."""
    lsr: int = 0
    """Middle 32 bits of the NTP timestamp of the last SR received from the source."""
    dlsr: int = 0
    """Delay since that SR, in 1/65536 s."""

    @classmethod
    def parse(cls, data: bytes, pos: int) -> RtcpReportBlock:
        if pos + _REPORT_BLOCK.size > len(data):
            raise PacketError("RTCP report block is truncated")
        ssrc, fraction, lost_hi, lost_lo, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        lost = (lost_hi << 16) | lost_lo
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, fraction, lost, highest, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.packets_lost)) & 0xFFFFFF
        return _REPORT_BLOCK.pack(
            self.ssrc & 0xFFFFFFFF,
            max(0, min(255, self.fraction_lost)),
            lost >> 16,
            lost & 0xFFFF,
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )


def _rtcp_header(packet_type: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise ValueError("RTCP packet body must be a multiple of 4 bytes")
    if count > 31:
        raise ValueError("RTCP packet count is limited to 31")
    return _RTCP_HEADER.pack((RTP_VERSION << 6) | count, packet_type, len(body) // 4) + body


def _blocks(data: bytes, pos: int, count: int) -> list[RtcpReportBlock]:
    blocks = []
    for _ in range(count):
        blocks.append(RtcpReportBlock.parse(data, pos))
        pos += _REPORT_BLOCK.size
    return blocks


@dataclass(frozen=True)
class RtcpSenderReport:
    """SR (RFC 3550 §6.4.1); ``ntp_timestamp`` is the 64-bit NTP time (seconds << 32 | fraction)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[RtcpReportBlock, ...] = ()

    @classmethod
    def parse(cls, data: bytes, count: int) -> RtcpSenderReport:
        if len(data) < 24:
            raise PacketError("RTCP sender report is truncated")
        ssrc, ntp_hi, ntp_lo, rtp_ts, packets, octets = struct.unpack_from("!IIIIII", data)
        return cls(ssrc, (ntp_hi << 32) | ntp_lo, rtp_ts, packets, octets, tuple(_blocks(data, 24, count)))

    def __bytes__(self) -> bytes:
        body = struct.pack(
            "!IQIII",
            self.ssrc & 0xFFFFFFFF,
            self.ntp_timestamp & 0xFFFFFFFFFFFFFFFF,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        )
        return _rtcp_header(RTCP_SR, len(self.reports), body + b"".join(map(bytes, self.reports)))


@dataclass(frozen=True)
class RtcpReceiverReport:
    """RR (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: tuple[RtcpReportBlock, ...] = ()

    @classmethod
    def parse(cls, data: bytes, count: int) -> RtcpReceiverReport:
        if len(data) < 4:
            raise PacketError("RTCP receiver report is truncated")
        (ssrc,) = struct.unpack_from("!I", data)
        return cls(ssrc, tuple(_blocks(data, 4, count)))

    def __bytes__(self) -> bytes:
        body = struct.pack("!I", self.ssrc & 0xFFFFFFFF) + b"".join(map(bytes, self.reports))
        return _rtcp_header(RTCP_RR, len(self.reports), body)


@dataclass(frozen=True)
class RtcpSdes:
    """SDES (RFC 3550 §6.5): chunks of ``(ssrc, ((item type, value), ...))``."""

    chunks: tuple[tuple[int, tuple[tuple[int, bytes], ...]], ...]

    @classmethod
    def parse(cls, data: bytes, count: int) -> RtcpSdes:
        chunks = []
        pos = 0
        for _ in range(count):
            if pos + 4 > len(data):
                raise PacketError("RTCP SDES chunk is truncated")
            (ssrc,) = struct.unpack_from("!I", data, pos)
            pos += 4
            items = []
            while True:
                if pos >= len(data):
                    raise PacketError("RTCP SDES items are truncated")
                item_type = data[pos]
                if item_type == 0:
                    pos = (pos + 4) & ~3  # the null item and padding up to the next 32-bit boundary
                    break
                if pos + 2 > len(data) or pos + 2 + data[pos + 1] > len(data):
                    raise PacketError("RTCP SDES item is truncated")
                length = data[pos + 1]
                items.append((item_type, bytes(data[pos + 2 : pos + 2 + length])))
                pos += 2 + length
            chunks.append((ssrc, tuple(items)))
        return cls(tuple(chunks))

    def __bytes__(self) -> bytes:
        body = b""
        for ssrc, items in self.chunks:
            chunk = struct.pack("!I", ssrc & 0xFFFFFFFF)
            for item_type, value in items:
                if not 0 < item_type < 256 or len(value) > 255:
                    raise ValueError("SDES item type must be 1-255 and its value at most 255 bytes")
                chunk += bytes([item_type, len(value)]) + value
            chunk += b"\x00" * (4 - len(chunk) % 4)  # null item, padded to a 32-bit boundary
            body += chunk
        return _rtcp_header(RTCP_SDES, len(self.chunks), body)


@dataclass(frozen=True)
class RtcpBye:
    """BYE (RFC 3550 §6.6)."""

    sources: tuple[int, ...]
    reason: bytes = b""

    @classmethod
    def parse(cls, data: bytes, count: int) -> RtcpBye:
        if len(data) < 4 * count:
            raise PacketError("RTCP BYE has truncated sources")
        sources = struct.unpack_from(f"!{count}I", data)
        reason = b""
        pos = 4 * count
        if pos < len(data):
            length = data[pos]
            if pos + 1 + length > len(data):
                raise PacketError("RTCP BYE has truncated reason")
            reason = bytes(data[pos + 1 : pos + 1 + length])
        return cls(tuple(sources), reason)

    def __bytes__(self) -> bytes:
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason:
            if len(self.reason) > 255:
                raise ValueError("RTCP BYE reason is at most 255 bytes")
            body += bytes([len(self.reason)]) + self.reason
            body += b"\x00" * (-len(body) % 4)
        return _rtcp_header(RTCP_BYE, len(self.sources), body)


@dataclass(frozen=True)
class RtcpUnknown:
    """Any other RTCP packet (APP, XR, feedback...), kept as its type, count and body."""

    packet_type: int
    count: int
    body: bytes

    def __bytes__(self) -> bytes:
        return _rtcp_header(self.packet_type, self.count, self.body)


RtcpPacket = RtcpSenderReport | RtcpReceiverReport | RtcpSdes | RtcpBye | RtcpUnknown


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet into its parts; raise :class:`PacketError` on any inconsistency."""
    packets: list[RtcpPacket] = []
    pos = 0
    if len(data) < _RTCP_HEADER.size:
        raise PacketError(f"RTCP packet length is less than {_RTCP_HEADER.size} bytes ({len(data)})")
    while pos < len(data):
        if pos + _RTCP_HEADER.size > len(data):
            raise PacketError("RTCP packet has a truncated header")
        first, packet_type, words = _RTCP_HEADER.unpack_from(data, pos)
        if first >> 6 != RTP_VERSION:
            raise PacketError(f"RTCP packet has version {first >> 6}, expected {RTP_VERSION}")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise PacketError("RTCP packet length exceeds the datagram")
        body = bytes(data[pos + 4 : end])
        if first & 0x20:
            if not body or body[-1] == 0 or body[-1] > len(body):
                raise PacketError("RTCP packet has invalid padding length")
            body = body[: -body[-1]]
        count = first & 0x1F
        packet: RtcpPacket
        if packet_type == RTCP_SR:
            packet = RtcpSenderReport.parse(body, count)
        elif packet_type == RTCP_RR:
            packet = RtcpReceiverReport.parse(body, count)
        elif packet_type == RTCP_SDES:
            packet = RtcpSdes.parse(body, count)
        elif packet_type == RTCP_BYE:
            packet = RtcpBye.parse(body, count)
        else:
            packet = RtcpUnknown(packet_type, count, body)
        packets.append(packet)
        pos = end
    return packets
