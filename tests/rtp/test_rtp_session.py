"""MediaSession, sans I/O: two sessions joined by ``transfer()`` on a fake clock (no sockets)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.mixer.g711 import decode, encode
from bridge.rtp.errors import EndpointError
from bridge.rtp.inband import COLUMNS, ROWS
from bridge.rtp.packet import RtpPacket, parse_rtcp
from bridge.rtp.sdp import MediaDescription
from bridge.rtp.session import MediaSession

A_ADDR = ("10.0.0.1", 4000)
B_ADDR = ("10.0.0.2", 5000)
FRAME = 160


def session(ssrc: int = 1, *, inband: bool = False) -> MediaSession:
    return MediaSession(ssrc=ssrc, sequence=65500, timestamp=2**32 - 800, cname="t", ntp_offset=0.0, inband_dtmf=inband)


def media(addr: tuple[str, int], direction: str = "sendrecv", codec: str = "PCMU") -> MediaDescription:
    return MediaDescription(addr[0], addr[1], codec, 0 if codec == "PCMU" else 8, 101, direction)


def tone(freq: float, frames: int, amp: float = 8000) -> np.ndarray:
    t = np.arange(frames * FRAME) / 8000
    return np.round(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def transfer(packets: list[bytes], receiver: MediaSession, source: tuple[str, int], now: float) -> None:
    for packet in packets:
        receiver.receive_rtp(packet, source, now)


def send_tick(sender: MediaSession, payload: bytes, now: float) -> list[bytes]:
    if not sender.sending:
        return []
    return [sender.audio_packet(payload, now)] if sender.dtmf_idle else sender.tick_packets(payload, now)


def dominant(pcm: np.ndarray) -> float:
    x = pcm.astype(float)
    spec = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / 8000)[int(np.argmax(spec[1:])) + 1])


def call() -> tuple[MediaSession, MediaSession]:
    a, b = session(1), session(2)
    a.start(media(B_ADDR), 0.0)
    b.start(media(A_ADDR), 0.0)
    return a, b


def test_audio_flows_with_continuous_sequence_and_timestamps_across_wrap() -> None:
    a, b = call()
    encoded = encode(tone(440, 50), "PCMU").tobytes()
    sent: list[bytes] = []
    out = []
    for i in range(50):
        packets = send_tick(a, encoded[i * FRAME : (i + 1) * FRAME], i * 0.02)
        sent += packets
        transfer(packets, b, A_ADDR, i * 0.02 + 0.005)
        frame = b.read_frame(i * 0.02 + 0.01)
        if frame is not None:
            out.append(frame)
    parsed = [RtpPacket.parse(p) for p in sent]
    assert [p.sequence_number for p in parsed] == [(65500 + i) % 65536 for i in range(50)]
    assert [p.timestamp for p in parsed] == [(2**32 - 800 + 160 * i) % 2**32 for i in range(50)]
    assert [p.marker for p in parsed] == [True] + [False] * 49
    assert len(out) == 49  # one tick of buffering
    assert abs(dominant(decode(b"".join(out), "PCMU")) - 440) < 2
    stats = b.stats()
    assert (stats["packets_in"], stats["lost"], stats["codec"], stats["remote"]) == (50, 0, "PCMU", "10.0.0.1:4000")


def test_symmetric_rtp_latches_to_the_real_source_and_drops_strangers() -> None:
    a, b = call()
    natted = ("192.0.2.7", 31000)
    transfer(send_tick(a, bytes(FRAME), 0.0), b, natted, 0.0)
    assert b.remote == natted
    transfer(send_tick(a, bytes(FRAME), 0.02), b, ("198.51.100.9", 1), 0.02)
    assert b.foreign == 1
    assert b.packets_in == 1
    transfer(send_tick(a, bytes(FRAME), 0.04), b, A_ADDR, 0.04)  # the SDP address itself takes the stream back
    assert b.remote == A_ADDR
    transfer(send_tick(a, bytes(FRAME), 0.06), b, natted, 0.06)
    assert b.foreign == 2
    b.start(media(A_ADDR), 1.0)  # re-INVITE re-arms latching
    assert b.remote == A_ADDR
    transfer(send_tick(a, bytes(FRAME), 1.0), b, natted, 1.0)
    assert b.remote == natted


def test_a_malformed_packet_never_latches() -> None:
    a, b = call()
    b.receive_rtp(b"\x90\x00" + bytes(10), ("203.0.113.5", 9), 0.0)  # PT 0 but a truncated extension
    assert (b.malformed, b.remote) == (1, A_ADDR)
    transfer(send_tick(a, bytes(FRAME), 0.0), b, ("192.0.2.7", 31000), 0.0)
    assert b.remote == ("192.0.2.7", 31000)


def test_nothing_is_accepted_before_start_and_unknown_payload_types_are_ignored() -> None:
    a, b = session(1), session(2)
    a.start(media(B_ADDR), 0.0)
    transfer(send_tick(a, bytes(FRAME), 0.0), b, A_ADDR, 0.0)
    assert (b.packets_in, b.ignored) == (0, 1)
    b.start(media(A_ADDR), 0.0)
    b.receive_rtp(bytes(RtpPacket(payload_type=13, payload=b"\x40")), A_ADDR, 0.1)  # comfort noise
    b.receive_rtp(bytes(RtpPacket(payload_type=96, payload=bytes(FRAME))), A_ADDR, 0.1)
    assert (b.packets_in, b.ignored) == (0, 3)


def test_hold_stops_sending_and_suspends_the_rtp_timeout() -> None:
    a, b = call()
    assert a.sending
    a.start(media(B_ADDR, "sendonly"), 1.0)  # B put us on hold with a=sendonly: it wants nothing from us
    assert not a.sending
    assert not a.timed_out(1000.0, 30.0)  # and may well send nothing either
    a.start(media(B_ADDR, "inactive"), 2.0)
    assert not a.timed_out(1000.0, 30.0)
    a.start(media(("0.0.0.0", 5000), "inactive"), 3.0)
    assert not a.sending
    a.start(media(B_ADDR), 4.0)  # taken off hold: the timeout counts again, from the re-INVITE
    assert a.sending
    assert not a.timed_out(33.0, 30.0)
    assert a.timed_out(34.5, 30.0)


def test_rtp_timeout_counts_from_the_last_packet() -> None:
    a, b = call()
    assert not b.timed_out(29.0, 30.0)
    assert b.timed_out(30.5, 30.0)
    transfer(send_tick(a, bytes(FRAME), 30.0), b, A_ADDR, 30.0)
    assert not b.timed_out(59.0, 30.0)
    assert b.timed_out(60.5, 30.0)


def test_dtmf_send_and_receive_replaces_audio_ticks() -> None:
    a, b = call()
    a.add_dtmf("4", 100)
    a.add_dtmf("#", 100)
    sent = []
    for i in range(30):
        packets = send_tick(a, bytes([0xFF]) * FRAME, i * 0.02)
        sent += packets
        transfer(packets, b, A_ADDR, i * 0.02)
    assert b.take_digits() == ["4", "#"]
    assert b.take_digits() == []
    parsed = [RtpPacket.parse(p) for p in sent]
    assert [p.sequence_number for p in parsed] == [(65500 + i) % 65536 for i in range(len(parsed))]
    events = [p for p in parsed if p.payload_type == 101]
    assert len(events) == 2 * (5 + 2)  # 4 updates + 3 ends per digit (100 ms)
    audio = [p for p in parsed if p.payload_type == 0]
    steps = {(y.timestamp - x.timestamp) % 2**32 for x, y in zip(audio, audio[1:], strict=False)}
    assert steps <= {160, 160 * 6}  # audio skips exactly the event's duration
    assert a.stats()["dtmf_sent"] == 2 and b.stats()["dtmf_received"] == 2


def test_new_ssrc_restarts_statistics() -> None:
    a, b = call()
    for i in range(5):
        transfer(send_tick(a, bytes(FRAME), i * 0.02), b, A_ADDR, i * 0.02)
    c = session(99)
    c.start(media(B_ADDR), 0.0)
    for i in range(3):
        transfer(send_tick(c, bytes(FRAME), 0.1 + i * 0.02), b, A_ADDR, 0.1 + i * 0.02)
    assert b.source is not None and b.source.ssrc == 99 and b.source.received == 3


def test_rtcp_reports_flow_between_sessions_including_muxed_on_the_rtp_port() -> None:
    a, b = call()
    for i in range(50):
        packets = send_tick(a, bytes(FRAME), i * 0.02)
        if i % 5:
            transfer(packets, b, A_ADDR, i * 0.02 + 0.01)
    report = b.rtcp.build_report(1.0)
    assert parse_rtcp(report)[0].reports[0].fraction_lost > 0  # type: ignore[union-attr]
    a.receive_rtcp(report, (B_ADDR[0], B_ADDR[1] + 1), 1.01)
    assert a.stats()["remote_loss_fraction"] is not None
    assert abs(a.stats()["remote_loss_fraction"] - 0.2) < 0.03
    a.receive_rtp(b.rtcp.build_report(2.0), B_ADDR, 2.0)  # RFC 5761 mux
    assert a.rtcp.reports_received == 2


def test_inband_dtmf_detected_in_received_audio() -> None:
    a = session(1)
    b = session(2, inband=True)
    a.start(media(B_ADDR, codec="PCMA"), 0.0)
    b.start(media(A_ADDR, codec="PCMA"), 0.0)
    t = np.arange(6 * FRAME) / 8000
    key = np.round(3000 * (np.sin(2 * np.pi * ROWS[2] * t) + np.sin(2 * np.pi * COLUMNS[1] * t))).astype(np.int16)
    audio = np.concatenate([np.zeros(4 * FRAME, np.int16), key, np.zeros(10 * FRAME, np.int16)])
    encoded = encode(audio, "PCMA").tobytes()
    for i in range(len(audio) // FRAME):
        transfer(send_tick(a, encoded[i * FRAME : (i + 1) * FRAME], i * 0.02), b, A_ADDR, i * 0.02)
        b.read_frame(i * 0.02)
    assert b.take_digits() == ["8"]


@settings(max_examples=300)
@given(st.binary(max_size=200), st.sampled_from([0, 101]))
def test_garbage_datagrams_never_raise(data: bytes, pt: int) -> None:
    _, b = call()
    b.receive_rtp(data, A_ADDR, 0.0)
    b.receive_rtp(struct.pack("!BBHII", 0x80 | (data[0] & 0x3F if data else 0), pt, 1, 2, 3) + data, A_ADDR, 0.0)
    b.receive_rtcp(data, A_ADDR, 0.0)
    b.read_frame(0.1)
    b.stats()


def test_inband_detection_stops_once_the_peer_sends_rfc4733() -> None:
    a = session(1)
    b = session(2, inband=True)
    a.start(media(B_ADDR), 0.0)
    b.start(media(A_ADDR), 0.0)
    t = np.arange(6 * FRAME) / 8000
    key = np.round(3000 * (np.sin(2 * np.pi * ROWS[0] * t) + np.sin(2 * np.pi * COLUMNS[0] * t))).astype(np.int16)
    encoded = encode(np.concatenate([key, np.zeros(6 * FRAME, np.int16)]), "PCMU").tobytes()
    a.add_dtmf("1", 100)  # the gateway sends the event and (below) the same key as tones
    now = 0.0
    for i in range(12):
        transfer(send_tick(a, encoded[i * FRAME : (i + 1) * FRAME], now), b, A_ADDR, now)
        b.read_frame(now)
        now += 0.02
    for i in range(12):
        transfer([a.audio_packet(encoded[i * FRAME : (i + 1) * FRAME], now)], b, A_ADDR, now)
        b.read_frame(now)
        now += 0.02
    assert b.take_digits() == ["1"]


def test_dtmf_to_a_peer_without_telephone_event_goes_in_band() -> None:
    a = session(1)
    b = session(2, inband=True)
    a.start(MediaDescription(B_ADDR[0], B_ADDR[1], "PCMA", 8, None, "sendrecv"), 0.0)
    b.start(MediaDescription(A_ADDR[0], A_ADDR[1], "PCMA", 8, None, "sendrecv"), 0.0)
    a.add_dtmf("0", 100)
    a.add_dtmf("D", 100)
    speech = encode(tone(300, 1), "PCMA").tobytes()
    for i in range(20):
        packets = send_tick(a, speech, i * 0.02)
        assert [RtpPacket.parse(p).payload_type for p in packets] == [8]
        transfer(packets, b, A_ADDR, i * 0.02)
        b.read_frame(i * 0.02)
    assert b.take_digits() == ["0", "D"]
    assert a.dtmf_idle


def test_dtmf_before_start_is_a_caller_bug() -> None:
    with pytest.raises(EndpointError):
        session().add_dtmf("1")
