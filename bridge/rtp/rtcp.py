"""RTP reception statistics and RTCP SR/RR reports (RFC 3550 §6.4, appendix A.1, A.3, A.8). Pure.

:class:`ReceptionStats` follows the remote source: extended highest sequence number with wrap-around and
restart detection (A.1, without the probation period: the endpoint latches to one source), cumulative and
interval loss (A.3), and interarrival jitter in timestamp units (A.8: ``J += (|D| - J) / 16``).

:class:`RtcpSession` builds our compound report (SR when we sent RTP since the previous report, else RR;
always followed by SDES CNAME, RFC 3550 §6.1) and reads the peer's: its SR gives the LSR/DLSR we echo, its
report block about us gives the loss and jitter the peer sees and the round-trip time (§6.4.1).
Times are ``now`` from the caller's monotonic clock; ``ntp_offset`` maps it to wall-clock NTP seconds.
"""

from __future__ import annotations

from bridge.rtp.errors import PacketError
from bridge.rtp.packet import (
    SDES_CNAME,
    RtcpBye,
    RtcpReceiverReport,
    RtcpReportBlock,
    RtcpSdes,
    RtcpSenderReport,
    parse_rtcp,
)

__all__ = ["NTP_EPOCH_OFFSET", "ReceptionStats", "RtcpSession"]

CLOCK_RATE = 8000
MAX_DROPOUT = 3000
MAX_MISORDER = 100
SEQ_MOD = 1 << 16
NTP_EPOCH_OFFSET = 2_208_988_800
"""Seconds from 1900-01-01 (NTP epoch) to 1970-01-01 (Unix epoch)."""


class ReceptionStats:
    """Statistics of one remote RTP source (RFC 3550 A.1, A.3, A.8)."""

    def __init__(self, ssrc: int, sequence: int) -> None:
        self.ssrc = ssrc
        self._init(sequence)
        self.jitter = 0.0  # timestamp units
        self._transit: float | None = None
        self._expected_prior = 0
        self._received_prior = 0

    def _init(self, sequence: int) -> None:
        self.base_seq = sequence
        self.max_seq = sequence
        self.cycles = 0
        self.received = 0
        self.bad_seq = SEQ_MOD + 1
        self._expected_prior = 0
        self._received_prior = 0

    def update(self, sequence: int, timestamp: int, arrival: float) -> bool:
        """Account one packet (``arrival`` in seconds); False if it looks like a stray (a huge sequence jump)."""
        udelta = (sequence - self.max_seq) & 0xFFFF
        if udelta < MAX_DROPOUT:
            if sequence < self.max_seq:
                self.cycles += SEQ_MOD
            self.max_seq = sequence
        elif udelta <= SEQ_MOD - MAX_MISORDER:
            if sequence != self.bad_seq:
                self.bad_seq = (sequence + 1) & 0xFFFF
                return False
            self._init(sequence)  # two sequential packets after a jump: the source restarted
        # else: a duplicate or a reordered packet
        self.received += 1
        transit = arrival * CLOCK_RATE - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < 0x40000000:  # not a timestamp wrap or jump
                self.jitter += (d - self.jitter) / 16.0
        self._transit = transit
        return True

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (negative when duplicates outnumber losses)."""
        return self.expected - self.received

    @property
    def loss_fraction(self) -> float:
        """Cumulative lost / expected since the start, 0..1."""
        expected = self.expected
        return max(0.0, self.lost / expected) if expected > 0 else 0.0

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / CLOCK_RATE

    def report_block(self, lsr: int, dlsr: int) -> RtcpReportBlock:
        """The report block for this source; starts a new loss interval (A.3)."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior, self._received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        return RtcpReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=self.lost,
            highest_sequence=self.extended_max,
            jitter=int(self.jitter),
            lsr=lsr,
            dlsr=dlsr,
        )


class RtcpSession:
    """Our side of RTCP for one leg: counts what we send, builds reports, reads the peer's."""

    def __init__(self, *, ssrc: int, cname: str, ntp_offset: float) -> None:
        self.ssrc = ssrc
        self.cname = cname.encode()[:255]
        self.ntp_offset = ntp_offset
        # What we send, updated by the sender for every packet (attributes, not a method: hot path).
        self.packets_sent = 0
        self.octets_sent = 0
        self.last_rtp_timestamp = 0
        self.last_send_time = 0.0
        self._packets_at_report = 0
        self.source: ReceptionStats | None = None
        self._lsr = 0  # middle 32 bits of the peer's last SR
        self._lsr_time: float | None = None
        self.remote_fraction_lost: float | None = None
        self.remote_packets_lost: int | None = None
        self.remote_jitter_ms: float | None = None
        self.rtt_ms: float | None = None
        self.bye = False
        self.reports_sent = 0
        self.reports_received = 0
        self.malformed = 0

    def ntp(self, now: float) -> int:
        """64-bit NTP timestamp for monotonic time ``now``."""
        seconds = now + self.ntp_offset + NTP_EPOCH_OFFSET
        return int(seconds * (1 << 32)) & 0xFFFFFFFFFFFFFFFF

    def on_sent(self, rtp_timestamp: int, payload_size: int, now: float) -> None:
        """Account one RTP packet we sent (the media session updates the attributes inline instead)."""
        self.packets_sent += 1
        self.octets_sent += payload_size
        self.last_rtp_timestamp = rtp_timestamp
        self.last_send_time = now

    def build_report(self, now: float) -> bytes:
        """Our compound RTCP packet: SR or RR (+ a report block on the peer's source), then SDES CNAME."""
        blocks: tuple[RtcpReportBlock, ...] = ()
        if self.source is not None:
            dlsr = 0
            if self._lsr_time is not None:
                dlsr = int((now - self._lsr_time) * 65536) & 0xFFFFFFFF
            blocks = (self.source.report_block(self._lsr, dlsr),)
        report: RtcpSenderReport | RtcpReceiverReport
        if self.packets_sent != self._packets_at_report:  # we sent since the last report: SR (RFC 3550 §6.4)
            rtp_ts = (self.last_rtp_timestamp + int((now - self.last_send_time) * CLOCK_RATE)) & 0xFFFFFFFF
            report = RtcpSenderReport(
                ssrc=self.ssrc,
                ntp_timestamp=self.ntp(now),
                rtp_timestamp=rtp_ts,
                packet_count=self.packets_sent,
                octet_count=self.octets_sent,
                reports=blocks,
            )
        else:
            report = RtcpReceiverReport(ssrc=self.ssrc, reports=blocks)
        self._packets_at_report = self.packets_sent
        self.reports_sent += 1
        sdes = RtcpSdes(((self.ssrc, ((SDES_CNAME, self.cname),)),))
        return bytes(report) + bytes(sdes)

    def build_bye(self, now: float) -> bytes:
        """A final report followed by BYE (sent when the leg closes)."""
        return self.build_report(now) + bytes(RtcpBye((self.ssrc,)))

    def receive(self, data: bytes, now: float) -> None:
        """Read one compound RTCP packet from the peer; a malformed one is counted and ignored."""
        try:
            packets = parse_rtcp(data)
        except PacketError:
            self.malformed += 1
            return
        self.reports_received += 1
        for packet in packets:
            if isinstance(packet, RtcpSenderReport):
                self._lsr = (packet.ntp_timestamp >> 16) & 0xFFFFFFFF
                self._lsr_time = now
                self._read_blocks(packet.reports, now)
            elif isinstance(packet, RtcpReceiverReport):
                self._read_blocks(packet.reports, now)
            elif isinstance(packet, RtcpBye):
                self.bye = True

    def _read_blocks(self, blocks: tuple[RtcpReportBlock, ...], now: float) -> None:
        for block in blocks:
            if block.ssrc != self.ssrc:
                continue
            self.remote_fraction_lost = block.fraction_lost / 256.0
            self.remote_packets_lost = block.packets_lost
            self.remote_jitter_ms = block.jitter * 1000.0 / CLOCK_RATE
            if block.lsr:
                arrival = (self.ntp(now) >> 16) & 0xFFFFFFFF
                rtt = (arrival - block.lsr - block.dlsr) & 0xFFFFFFFF
                if rtt < 0x80000000:
                    self.rtt_ms = rtt * 1000.0 / 65536
