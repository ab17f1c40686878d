"""The media of one leg, sans I/O: datagrams in, frames/digits/datagrams out. :mod:`bridge.rtp.endpoint` is
its asyncio glue (sockets and timers); tests drive two sessions joined by a ``transfer()`` helper.

Receive path (hot: up to 100,000 packets/s per engine). The fixed RTP header is read with one
``struct.unpack_from``; no packet object is built unless the packet has CSRCs, an extension or padding.

* Nothing is accepted before :meth:`MediaSession.start` (we do not know the codec yet).
* **Symmetric RTP** (RFC 4961): we send to the address in the remote SDP until the first well-formed packet
  with a negotiated payload type arrives, then to wherever that packet came from (NATs and gateways that
  send from another address than they advertise). Once latched, packets from any other address are dropped,
  except from the SDP address itself, which takes the stream back (a stranger who got in first cannot keep
  it); :meth:`start` (re-INVITE) re-arms latching.
* Audio goes to the :class:`~bridge.rtp.jitterbuffer.JitterBuffer`; telephone events to the
  :class:`~bridge.rtp.dtmf.DtmfReceiver`; comfort noise (PT 13) and unknown payload types are counted and
  dropped. A new SSRC restarts the statistics and the jitter buffer.
* Digits (RFC 4733, or in-band when enabled) accumulate in :attr:`MediaSession.digits` for the glue to take.
  In-band detection stops for good at the first RFC 4733 packet: a gateway that sends both would otherwise
  report every key press twice.

Send path: one packet per 20 ms tick with sequence number +1 and timestamp +160; while a DTMF event is
being sent the tick carries the event packets instead (see :mod:`bridge.rtp.dtmf`), or, for a peer that did
not negotiate telephone-event, the digit's tones instead of the audio. We send nothing while
the remote party does not want our audio (it is ``sendonly``/``inactive``: on hold).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from bridge.mixer.g711 import DECODE_TABLES, ENCODE_TABLES
from bridge.rtp.dtmf import DtmfReceiver, DtmfSender
from bridge.rtp.errors import EndpointError, PacketError
from bridge.rtp.inband import InbandDtmfDetector, dtmf_tone
from bridge.rtp.jitterbuffer import JitterBuffer
from bridge.rtp.packet import RTP_HEADER, RtpPacket
from bridge.rtp.rtcp import ReceptionStats, RtcpSession
from bridge.rtp.sdp import MediaDescription

__all__ = ["Address", "MediaSession"]

Address = tuple[str, int]
FRAME_SAMPLES = 160
PT_COMFORT_NOISE = 13
_MASK = 0xFFFFFFFF


class MediaSession:
    """One leg's RTP/RTCP state. ``ssrc``, ``sequence`` and ``timestamp`` are our random initial values."""

    def __init__(
        self,
        *,
        ssrc: int,
        sequence: int,
        timestamp: int,
        cname: str,
        ntp_offset: float,
        inband_dtmf: bool = False,
    ) -> None:
        self.ssrc = ssrc & _MASK
        self._seq = sequence & 0xFFFF
        self._ts = timestamp & _MASK
        self.rtcp = RtcpSession(ssrc=self.ssrc, cname=cname, ntp_offset=ntp_offset)
        self.media: MediaDescription | None = None
        self.remote: Address | None = None
        self.remote_rtcp: Address | None = None
        self._sdp_remote: Address | None = None
        self._latched = False
        self._rtcp_latched = False
        self._audio_pt = -1
        self._dtmf_pt = -1
        self._sending = False
        self._marker = True
        self.jitter: JitterBuffer | None = None
        self.source: ReceptionStats | None = None
        self._dtmf_rx = DtmfReceiver()
        self._dtmf_tx = DtmfSender()
        self._tone_frames: deque[bytes] = deque()  # in-band DTMF queued for peers without telephone-event
        self.dtmf_idle = True
        """True when the next tick carries the caller's audio (no DTMF being sent): :meth:`audio_packet`;
        else :meth:`tick_packets`. An attribute, read for every packet sent."""
        self._inband = InbandDtmfDetector() if inband_dtmf else None
        self._inband_active = inband_dtmf
        self._decode = DECODE_TABLES["PCMU"]
        self.digits: list[str] = []
        self.started_at: float | None = None
        self.last_received: float | None = None
        self.packets_in = 0
        self.bytes_in = 0
        self.packets_out = 0
        self.bytes_out = 0
        self.malformed = 0
        self.ignored = 0  # before start(), unknown payload type, comfort noise, stray sequence jump
        self.foreign = 0  # from another address than the latched one

    # --- control ---------------------------------------------------------------------------------------

    def start(self, media: MediaDescription, now: float) -> None:
        """Begin (or, on re-INVITE, update) the stream with the negotiated remote ``media``."""
        if media.codec not in DECODE_TABLES:
            raise EndpointError(f"codec {media.codec!r} is not supported by the media path")
        if self.media is None or media.codec != self.media.codec:
            self.jitter = JitterBuffer(media.codec)
            self._decode = DECODE_TABLES[media.codec]
        self.media = media
        self._audio_pt = media.payload_type
        self._dtmf_pt = -1 if media.dtmf_payload_type is None else media.dtmf_payload_type
        self._sending = media.remote_receives and media.port != 0
        if media.port and not _is_unspecified(media.address):
            self.remote = self._sdp_remote = (media.address, media.port)
            self.remote_rtcp = (media.address, media.port + 1)
        self._latched = self._rtcp_latched = False
        self._marker = True
        self.started_at = now

    @property
    def sending(self) -> bool:
        """True when :meth:`audio_packet` output should go out (started, and the peer wants our audio)."""
        return self._sending and self.remote is not None

    def timed_out(self, now: float, timeout_s: float) -> bool:
        """True when the peer should be sending RTP but nothing came for ``timeout_s``.

        Only a ``sendrecv`` stream can time out: in any hold state (``sendonly``, ``recvonly``, ``inactive``)
        many phones stop sending altogether, even when their SDP says ``sendonly`` (music on hold they lack).
        """
        if self.media is None or self.started_at is None or self.media.direction != "sendrecv":
            return False
        last = self.started_at if self.last_received is None else max(self.last_received, self.started_at)
        return now - last > timeout_s

    # --- receive ---------------------------------------------------------------------------------------

    def receive_rtp(self, data: bytes, addr: Address, now: float) -> None:
        """One datagram from the RTP socket (never raises for bad input)."""
        if len(data) < 12:
            self.malformed += 1
            return
        first, second, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        pt = second & 0x7F
        if pt != self._audio_pt and pt != self._dtmf_pt:
            # RTCP multiplexed on the RTP port (RFC 5761) uses 192-223, which no negotiated type can match.
            if 192 <= second <= 223 and first & 0xC0 == 0x80:
                if self.media is None or (self._latched and addr != self.remote):
                    self.ignored += 1
                else:
                    self.rtcp.receive(data, now)
            else:
                self.ignored += 1
            return
        if first == 0x80:  # version 2, no padding, extension or CSRCs: the usual case
            payload = data[12:]
        else:
            try:
                payload = RtpPacket.parse(data).payload
            except PacketError:
                self.malformed += 1
                return
        if not self._latched:
            self.remote = addr
            self._latched = True
        elif addr != self.remote:
            if addr != self._sdp_remote:
                self.foreign += 1
                return
            self.remote = addr  # the address the peer's SDP gave wins back a stream a stranger latched first
        source = self.source
        if source is None or source.ssrc != ssrc:
            source = self.source = self.rtcp.source = ReceptionStats(ssrc, seq)
            if self.jitter is not None:
                self.jitter.reset()
            pending = self._dtmf_rx.flush()
            if pending:
                self.digits.extend(pending)
        if not source.update(seq, ts, now):
            self.ignored += 1
            return
        self.last_received = now
        self.packets_in += 1
        self.bytes_in += len(data)
        if pt == self._audio_pt:
            if self._dtmf_rx.pending:
                ended = self._dtmf_rx.audio(ts)
                if ended:
                    self.digits.extend(ended)
            self.jitter.put(ts, payload)  # type: ignore[union-attr]  # set whenever _audio_pt is (start())
        else:
            self._inband_active = False  # the peer sends RFC 4733: tones in its audio would be reported twice
            digits = self._dtmf_rx.feed(ssrc, ts, payload)
            if digits:
                self.digits.extend(digits)

    def receive_rtcp(self, data: bytes, addr: Address, now: float) -> None:
        """One datagram from the RTCP socket (never raises for bad input)."""
        if self.media is None:
            self.ignored += 1
            return
        if addr != self.remote_rtcp:
            if self._rtcp_latched:
                self.foreign += 1
                return
            self.remote_rtcp = addr
        self._rtcp_latched = True
        self.rtcp.receive(data, now)

    def read_frame(self, now: float) -> bytes | None:
        """The next 20 ms encoded frame from the jitter buffer (None: nothing to play). Once per tick."""
        if self.jitter is None:
            return None
        frame = self.jitter.get()
        if self._inband is not None and self._inband_active:
            if frame is None:
                self._inband.silence()
            else:
                digit = self._inband.feed(self._decode.take(np.frombuffer(frame, dtype=np.uint8)))
                if digit:
                    self.digits.append(digit)
        return frame

    def take_digits(self) -> list[str]:
        """Digits detected since the last call, in order."""
        digits, self.digits = self.digits, []
        return digits

    # --- send ------------------------------------------------------------------------------------------

    def _update_dtmf_idle(self) -> None:
        self.dtmf_idle = self._dtmf_tx.idle and not self._tone_frames

    def add_dtmf(self, digit: str, duration_ms: int = 160) -> None:
        """Queue a digit; it goes out on the next ticks (:meth:`tick_packets`). RFC 4733 when the peer
        negotiated telephone-event, else as in-band tones replacing the audio (then 40 ms of silence)."""
        if self.media is None:
            raise EndpointError("send_dtmf() before start(): the telephone-event payload type is not known yet")
        if self._dtmf_pt >= 0:
            self._dtmf_tx.add(digit, duration_ms)
            self.dtmf_idle = False
            return
        duration_ms = max(40, min(2000, duration_ms))
        samples = np.concatenate([dtmf_tone(digit, duration_ms), np.zeros(2 * FRAME_SAMPLES, np.int16)])
        samples = np.pad(samples, (0, -len(samples) % FRAME_SAMPLES))
        encoded = ENCODE_TABLES[self.media.codec].take(samples.view(np.uint16)).tobytes()
        self._tone_frames.extend(encoded[i : i + FRAME_SAMPLES] for i in range(0, len(encoded), FRAME_SAMPLES))
        self.dtmf_idle = False

    def audio_packet(self, payload: bytes, now: float) -> bytes:
        """The RTP packet carrying one 20 ms frame; advances sequence number and timestamp."""
        second = self._audio_pt
        if self._marker:
            second |= 0x80
            self._marker = False
        seq, ts = self._seq, self._ts
        packet = RTP_HEADER.pack(0x80, second, seq, ts, self.ssrc) + payload
        self._seq = (seq + 1) & 0xFFFF
        self._ts = (ts + FRAME_SAMPLES) & _MASK
        self.packets_out += 1
        self.bytes_out += len(packet)
        rtcp = self.rtcp  # RtcpSession.on_sent, inlined: this runs for every packet of every leg
        rtcp.packets_sent += 1
        rtcp.octets_sent += len(payload)
        rtcp.last_rtp_timestamp = ts
        rtcp.last_send_time = now
        return packet

    def tick_packets(self, payload: bytes, now: float) -> list[bytes]:
        """Packets for one tick when DTMF may be in progress: event packets, or the audio packet."""
        if self._tone_frames:
            packet = self.audio_packet(self._tone_frames.popleft(), now)
            self._update_dtmf_idle()
            return [packet]
        events = self._dtmf_tx.tick(self._ts)
        self._update_dtmf_idle()
        if not events:
            return [self.audio_packet(payload, now)]
        packets = []
        for marker, ts, event in events:
            seq = self._seq
            packets.append(RTP_HEADER.pack(0x80, (0x80 if marker else 0) | self._dtmf_pt, seq, ts, self.ssrc) + event)
            self._seq = (seq + 1) & 0xFFFF
            self.packets_out += 1
            self.bytes_out += len(packets[-1])
            self.rtcp.on_sent(ts, len(event), now)
        self._ts = (self._ts + FRAME_SAMPLES) & _MASK
        return packets

    # --- reporting -------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters for the live view (RTCP-style loss and jitter of what we receive, and what the peer sees)."""
        source = self.source
        jitter = self.jitter
        return {
            "codec": None if self.media is None else self.media.codec,
            "remote": None if self.remote is None else f"{self.remote[0]}:{self.remote[1]}",
            "direction": None if self.media is None else self.media.direction,
            "packets_in": self.packets_in,
            "bytes_in": self.bytes_in,
            "packets_out": self.packets_out,
            "bytes_out": self.bytes_out,
            "lost": 0 if source is None else max(0, source.lost),
            "loss_fraction": 0.0 if source is None else round(source.loss_fraction, 4),
            "jitter_ms": 0.0 if source is None else round(source.jitter_ms, 2),
            "late": 0 if jitter is None else jitter.late,
            "duplicates": 0 if jitter is None else jitter.duplicates,
            "concealed": 0 if jitter is None else jitter.concealed,
            "jitter_buffer_ms": 0 if jitter is None else jitter.target * 20,
            "malformed": self.malformed,
            "ignored": self.ignored,
            "foreign": self.foreign,
            "dtmf_received": self._dtmf_rx.reported + (0 if self._inband is None else self._inband.detected),
            "dtmf_sent": self._dtmf_tx.sent,
            "remote_loss_fraction": self.rtcp.remote_fraction_lost,
            "remote_jitter_ms": self.rtcp.remote_jitter_ms,
            "rtt_ms": None if self.rtcp.rtt_ms is None else round(self.rtcp.rtt_ms, 2),
        }


def _is_unspecified(address: str) -> bool:
    return address in ("0.0.0.0", "::")
