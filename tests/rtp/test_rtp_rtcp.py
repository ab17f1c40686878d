"""RFC 3550 statistics (A.1 sequence tracking, A.3 loss, A.8 jitter) and SR/RR exchange with RTT."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.rtp.packet import RtcpReceiverReport, RtcpSdes, RtcpSenderReport, parse_rtcp
from bridge.rtp.rtcp import ReceptionStats, RtcpSession


def feed(stats: ReceptionStats, seqs: list[int], *, start_ts: int = 0, spacing: float = 0.02) -> None:
    for i, seq in enumerate(seqs):
        stats.update(seq & 0xFFFF, (start_ts + (seq - seqs[0]) * 160) & 0xFFFFFFFF, i * spacing)


def test_no_loss_no_jitter_for_a_perfect_stream() -> None:
    stats = ReceptionStats(ssrc=1, sequence=100)
    feed(stats, list(range(100, 200)))
    assert (stats.expected, stats.received, stats.lost) == (100, 100, 0)
    assert stats.jitter < 1e-6
    assert stats.loss_fraction == 0.0


def test_loss_counts_and_interval_fraction() -> None:
    stats = ReceptionStats(ssrc=1, sequence=0)
    seqs = [s for s in range(100) if s % 10 != 5]  # 10 % lost
    feed(stats, seqs)
    assert stats.lost == 10
    assert abs(stats.loss_fraction - 0.1) < 1e-9
    block = stats.report_block(lsr=0, dlsr=0)
    assert block.fraction_lost == int(0.1 * 256)
    assert block.packets_lost == 10
    assert block.highest_sequence == 99
    assert stats.report_block(lsr=0, dlsr=0).fraction_lost == 0  # nothing new in this interval


def test_sequence_wrap_extends_the_highest_sequence() -> None:
    stats = ReceptionStats(ssrc=1, sequence=65530)
    feed(stats, list(range(65530, 65546)))
    assert stats.cycles == 65536
    assert stats.extended_max == 65536 + 9
    assert stats.lost == 0


def test_a_huge_sequence_jump_is_ignored_once_then_accepted_as_a_restart() -> None:
    stats = ReceptionStats(ssrc=1, sequence=10)
    feed(stats, [10, 11, 12])
    assert not stats.update(40000, 0, 1.0)
    assert stats.update(40001, 160, 1.02)
    assert stats.base_seq == 40001
    assert stats.lost == 0


def test_jitter_follows_a8_for_alternating_delay() -> None:
    stats = ReceptionStats(ssrc=1, sequence=0)
    for i in range(2000):
        delay = 0.010 if i % 2 else 0.0  # |D| = 10 ms = 80 timestamp units every packet
        stats.update(i, i * 160, i * 0.02 + delay)
    assert abs(stats.jitter - 80) < 0.5
    assert abs(stats.jitter_ms - 10) < 0.1


def test_reordered_and_duplicate_packets() -> None:
    stats = ReceptionStats(ssrc=1, sequence=0)
    feed(stats, [0, 2, 1, 3, 3, 4])
    assert stats.lost == -1  # duplicates make it negative, as RFC 3550 says
    assert stats.loss_fraction == 0.0


@given(st.lists(st.integers(0, 0xFFFF), max_size=200), st.integers(0, 0xFFFF))
def test_stats_never_raise(seqs: list[int], first: int) -> None:
    stats = ReceptionStats(ssrc=1, sequence=first)
    for i, seq in enumerate(seqs):
        stats.update(seq, i * 7919, i * 0.02)
    stats.report_block(0, 0)


def test_sender_report_then_receiver_report_and_cname() -> None:
    session = RtcpSession(ssrc=0xAA, cname="leg@bridge", ntp_offset=1_700_000_000.0)
    assert isinstance(parse_rtcp(session.build_report(1.0))[0], RtcpReceiverReport)
    session.on_sent(rtp_timestamp=8000, payload_size=160, now=2.0)
    packets = parse_rtcp(session.build_report(2.5))
    sr = packets[0]
    assert isinstance(sr, RtcpSenderReport)
    assert (sr.ssrc, sr.packet_count, sr.octet_count) == (0xAA, 1, 160)
    assert sr.rtp_timestamp == 8000 + 4000  # 0.5 s after the last packet
    assert (sr.ntp_timestamp >> 32) == int(2.5 + 1_700_000_000 + 2_208_988_800)
    assert isinstance(packets[1], RtcpSdes)
    assert packets[1].chunks == ((0xAA, ((1, b"leg@bridge"),)),)
    assert isinstance(parse_rtcp(session.build_report(3.0))[0], RtcpReceiverReport)  # nothing sent since


def test_two_sessions_exchange_reports_and_measure_rtt() -> None:
    one_way = 0.030
    a = RtcpSession(ssrc=1, cname="a", ntp_offset=1000.0)
    b = RtcpSession(ssrc=2, cname="b", ntp_offset=5000.0)  # clocks need not agree
    b.source = ReceptionStats(ssrc=1, sequence=0)
    for i in range(100):
        if i % 4:  # 25 % lost on the way to B
            b.source.update(i, i * 160, i * 0.02 + one_way)
        a.on_sent(i * 160, 160, i * 0.02)
    sr = a.build_report(2.0)
    b.receive(sr, 2.0 + one_way)
    hold = 0.2  # B answers 200 ms later
    rr = b.build_report(2.0 + one_way + hold)
    a.receive(rr, 2.0 + 2 * one_way + hold)
    assert a.rtt_ms is not None and abs(a.rtt_ms - 2 * one_way * 1000) < 1.0
    assert a.remote_fraction_lost is not None and abs(a.remote_fraction_lost - 0.25) < 0.02
    assert a.remote_packets_lost == 25  # 0, 4, ..., 96
    assert a.reports_received == 1


def test_malformed_rtcp_is_counted_not_raised() -> None:
    session = RtcpSession(ssrc=1, cname="x", ntp_offset=0.0)
    session.receive(b"\x80\xc9\x00\x09garbage", 0.0)
    assert session.malformed == 1
    session.receive(session.build_bye(1.0), 1.0)
    assert session.bye
