"""RTP/RTCP packets: round trips, precise errors on truncation, and "parse raises PacketError or nothing"."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rtp.errors import PacketError
from bridge.rtp.packet import (
    SDES_CNAME,
    RtcpBye,
    RtcpReceiverReport,
    RtcpReportBlock,
    RtcpSdes,
    RtcpSenderReport,
    RtcpUnknown,
    RtpPacket,
    is_rtcp,
    parse_rtcp,
)

u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)

rtp_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=u16,
    timestamp=u32,
    ssrc=u32,
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(u32, max_size=15),
    extension=st.none() | st.tuples(u16, st.binary(max_size=40).map(lambda b: b[: len(b) - len(b) % 4])),
)

report_blocks = st.builds(
    RtcpReportBlock,
    ssrc=u32,
    fraction_lost=u8,
    packets_lost=st.integers(-0x800000, 0x7FFFFF),
    highest_sequence=u32,
    jitter=u32,
    lsr=u32,
    dlsr=u32,
)
blocks = st.lists(report_blocks, max_size=3).map(tuple)
rtcp_packets = st.one_of(
    st.builds(
        RtcpSenderReport,
        ssrc=u32,
        ntp_timestamp=st.integers(0, 2**64 - 1),
        rtp_timestamp=u32,
        packet_count=u32,
        octet_count=u32,
        reports=blocks,
    ),  # fmt: skip
    st.builds(RtcpReceiverReport, ssrc=u32, reports=blocks),
    st.builds(
        RtcpSdes,
        chunks=st.lists(
            st.tuples(u32, st.lists(st.tuples(st.integers(1, 8), st.binary(max_size=30)), max_size=3).map(tuple)),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(RtcpBye, sources=st.lists(u32, max_size=4).map(tuple), reason=st.binary(max_size=20)),
    st.builds(
        RtcpUnknown,
        packet_type=st.integers(204, 223),
        count=st.integers(0, 31),
        body=st.binary(max_size=40).map(lambda b: b[: len(b) - len(b) % 4]),
    ),  # fmt: skip
)


@given(rtp_packets)
def test_rtp_round_trip(packet: RtpPacket) -> None:
    assert RtpPacket.parse(bytes(packet)) == packet


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_rtp_parse_raises_only_packet_error(data: bytes) -> None:
    try:
        RtpPacket.parse(data)
    except PacketError:
        pass


@given(rtp_packets)
def test_rtp_every_truncation_parses_or_raises_packet_error(packet: RtpPacket) -> None:
    data = bytes(packet)
    for end in range(len(data)):
        try:
            RtpPacket.parse(data[:end])
        except PacketError:
            pass


def test_rtp_header_fields() -> None:
    data = bytes(RtpPacket(payload_type=101, sequence_number=0xBEEF, timestamp=0xCAFEBABE, ssrc=7, marker=True))
    assert data == struct.pack("!BBHII", 0x80, 0x80 | 101, 0xBEEF, 0xCAFEBABE, 7)
    assert not is_rtcp(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00\x00", "RTP packet length is less than 12 bytes (3)"),
        (b"\x40" + bytes(11), "RTP packet has version 1, expected 2"),
        (b"\x82" + bytes(11) + bytes(4), "RTP packet has truncated CSRC"),
        (b"\x90" + bytes(11) + b"\x00\x01", "RTP packet has truncated extension profile / length"),
        (b"\x90" + bytes(11) + b"\x00\x01\x00\x02" + bytes(4), "RTP packet has truncated extension value"),
        (b"\xa0" + bytes(11), "RTP packet has padding bit but no padding"),
        (b"\xa0" + bytes(11) + b"\x00\x00\x05", "RTP packet has invalid padding length 5"),
        (b"\xa0" + bytes(11) + b"\x00", "RTP packet has invalid padding length 0"),
    ],
)
def test_rtp_precise_errors(data: bytes, message: str) -> None:
    with pytest.raises(PacketError) as err:
        RtpPacket.parse(data)
    assert str(err.value) == message


def test_rtp_padding_is_stripped() -> None:
    data = bytes(RtpPacket(payload=b"abc")) + b"\x00\x00\x03"
    padded = bytes([data[0] | 0x20]) + data[1:]
    assert RtpPacket.parse(padded).payload == b"abc"


@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_rtcp_compound_round_trip(packets: list[object]) -> None:
    data = b"".join(bytes(p) for p in packets)  # type: ignore[call-overload]
    assert is_rtcp(data)
    assert parse_rtcp(data) == packets


@settings(max_examples=500)
@given(st.binary(max_size=160))
def test_rtcp_parse_raises_only_packet_error(data: bytes) -> None:
    try:
        parse_rtcp(data)
    except PacketError:
        pass


@given(st.lists(rtcp_packets, min_size=1, max_size=3))
def test_rtcp_every_truncation_parses_or_raises_packet_error(packets: list[object]) -> None:
    data = b"".join(bytes(p) for p in packets)  # type: ignore[call-overload]
    for end in range(len(data)):
        try:
            parse_rtcp(data[:end])
        except PacketError:
            pass


def test_rtcp_report_block_negative_loss_and_clamping() -> None:
    block = RtcpReportBlock(ssrc=1, fraction_lost=300, packets_lost=-5, highest_sequence=10, jitter=3)
    parsed = RtcpReportBlock.parse(bytes(block), 0)
    assert parsed.packets_lost == -5
    assert parsed.fraction_lost == 255
    huge = RtcpReportBlock(ssrc=1, fraction_lost=0, packets_lost=10**9, highest_sequence=0, jitter=0)
    assert RtcpReportBlock.parse(bytes(huge), 0).packets_lost == 0x7FFFFF


def test_rtcp_sdes_cname_layout() -> None:
    data = bytes(RtcpSdes(((0x11223344, ((SDES_CNAME, b"abc"),)),)))
    # header, SSRC, CNAME item (1, 3, "abc"), null item padded to 32 bits
    assert data == b"\x81\xca\x00\x03" + b"\x11\x22\x33\x44" + b"\x01\x03abc" + b"\x00\x00\x00"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80", "RTCP packet length is less than 4 bytes (1)"),
        (b"\x40\xc9\x00\x01" + bytes(4), "RTCP packet has version 1, expected 2"),
        (b"\x80\xc9\x00\x05" + bytes(4), "RTCP packet length exceeds the datagram"),
        (b"\x81\xc9\x00\x01" + bytes(4), "RTCP report block is truncated"),
        (b"\x80\xc8\x00\x01" + bytes(4), "RTCP sender report is truncated"),
        (b"\x81\xca\x00\x01" + bytes(4), "RTCP SDES items are truncated"),
        (b"\x81\xcb\x00\x00", "RTCP BYE has truncated sources"),
        (b"\xa0\xc9\x00\x01" + bytes(4), "RTCP packet has invalid padding length"),
        (b"\x80\xc9\x00\x01" + bytes(4) + b"\x80", "RTCP packet has a truncated header"),
    ],
)
def test_rtcp_precise_errors(data: bytes, message: str) -> None:
    with pytest.raises(PacketError) as err:
        parse_rtcp(data)
    assert str(err.value) == message
