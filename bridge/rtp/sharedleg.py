"""One leg on the batched RTP path (:mod:`bridge.rtp.shared`): the endpoint the media owner holds, and the
Python side paths of that leg -- latching, RFC 4733 events in and out, in-band DTMF, RTCP, RTP timeout.

:class:`BatchedLeg` satisfies :class:`bridge.conference.interfaces.MediaEndpoint` (``read_frame`` /
``write_frame`` for a consumer that is not the batch, ``send_dtmf``, ``stats``, ``close``) and has the
``start(media)`` of :class:`bridge.rtp.endpoint.RtpEndpoint`. Its signalling-side state (negotiated payload
types, the DTMF sender and receiver, RTCP) is a :class:`~bridge.rtp.session.MediaSession`; the steady audio
state (sequence numbers, counters, the jitter ring) lives in the owner's numpy tables at ``slot``.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bridge.rtp.batch import address_key, key_address
from bridge.rtp.errors import EndpointError, PacketError
from bridge.rtp.legtables import FRAME
from bridge.rtp.packet import RTP_HEADER, RtpPacket
from bridge.rtp.rtcp import ReceptionStats
from bridge.rtp.sdp import MediaDescription
from bridge.rtp.session import MediaSession
from bridge.rtp.shared import BatchedMedia, SocketGroup

__all__ = ["BatchedLeg"]

log = logging.getLogger(__name__)

RTCP_INTERVAL_S = 5.0


class BatchedLeg:
    """See the module docstring. Create with :meth:`open`; place on a socket with :meth:`place`."""

    def __init__(
        self, owner: BatchedMedia, session: MediaSession, *, on_dtmf: Callable[[str], None],
        on_timeout: Callable[[], None], rtp_timeout_s: float, inband: bool, now: float,
    ) -> None:  # fmt: skip
        self.owner = owner
        self.session = session
        self.inband = inband
        self._on_dtmf = on_dtmf
        self._on_timeout = on_timeout
        self.rtp_timeout_s = rtp_timeout_s
        self.group: SocketGroup | None = None
        self.sdp_key = -1
        self.remote_key = -1
        self.latched = False
        self.closed = False
        self._final: dict[str, Any] | None = None
        self._timed_out = False
        self._next_rtcp = now + RTCP_INTERVAL_S
        self._stats = ReceptionStats(0, 0)
        self._seen_in = 0  # steady packets counted at the last housekeeping (their arrival time is not kept)
        self.foreign = self.ignored = self.malformed = self.python_packets = 0
        self.slot = owner.new_slot(self)
        tables = owner.tables
        tables.ssrc_out[self.slot] = session.ssrc
        tables.seq_out[self.slot] = session._seq
        tables.ts_out[self.slot] = session._ts
        tables.marker[self.slot] = True

    @classmethod
    def open(
        cls, owner: BatchedMedia, *, now: float, on_dtmf: Callable[[str], None], on_timeout: Callable[[], None],
        rtp_timeout_s: float = 30.0, inband_dtmf: bool = False,
    ) -> BatchedLeg:  # fmt: skip
        session = MediaSession(
            ssrc=secrets.randbits(32), sequence=secrets.randbits(16), timestamp=secrets.randbits(32),
            cname=f"bridge-{secrets.token_hex(6)}@{owner.host}", ntp_offset=time.time() - now,
            inband_dtmf=inband_dtmf,
        )  # fmt: skip
        return cls(owner, session, on_dtmf=on_dtmf, on_timeout=on_timeout, rtp_timeout_s=rtp_timeout_s,
                   inband=inband_dtmf, now=now)  # fmt: skip

    @property
    def local_port(self) -> int:
        """The port our SDP advertises (place the leg first)."""
        if self.group is None:
            raise EndpointError("the leg is not placed on a socket yet")
        return self.group.port

    def place(self, remote: MediaDescription | None) -> int:
        """Choose the leg's socket (once) from the remote SDP address when known; returns the port."""
        if self.group is None:
            key = _key(remote)
            self.owner.place(self, key)
        return self.local_port

    # --- control ----------------------------------------------------------------------------------

    def start(self, media: MediaDescription, now: float | None = None) -> None:
        """Start (or update, on re-INVITE) the stream; re-arms latching as MediaSession does."""
        if self.closed:
            raise EndpointError("start() on a closed RTP endpoint")
        self.place(media)
        now = time.monotonic() if now is None else now
        session = self.session
        session.start(media, now)
        tables, slot = self.owner.tables, self.slot
        tables.set_audio_pt(slot, media.payload_type)
        tables.codec[slot] = 1 if media.codec == "PCMA" else 0
        tables.ring.silence[slot] = 0xD5 if media.codec == "PCMA" else 0xFF
        tables.marker[slot] = True
        key = _key(media)
        self.sdp_key = -1 if key is None or session.remote is None else key
        self.latched = False
        tables.remote_key[slot] = self.sdp_key if self.sdp_key >= 0 else 0
        tables.sending[slot] = session.sending and self.sdp_key >= 0
        self._timed_out = False
        self._next_rtcp = now + RTCP_INTERVAL_S * random.uniform(0.5, 1.5)
        assert self.group is not None
        self.group.dirty = True

    # --- MediaEndpoint ----------------------------------------------------------------------------

    def read_frame(self, now: float) -> bytes | None:
        """This leg's frame of the owner's last :meth:`BatchedMedia.pop` (None: nothing). MixerMedia does not
        call it (it takes all legs' frames in one batch); a consumer that is not the mixer does."""
        owner = self.owner
        if self.slot < len(owner.last_produced) and owner.last_produced[self.slot]:
            return bytes(owner.last_out[self.slot])
        return None

    def write_frame(self, payload: bytes) -> None:
        """One frame for a consumer other than the batch (sent in Python)."""
        if self.owner.tables.sending[self.slot] and not self.closed:
            self.python_send(payload, time.monotonic())

    def send_dtmf(self, digit: str, duration_ms: int = 160) -> None:
        self.session.add_dtmf(digit, duration_ms)  # raises EndpointError before start()
        self.owner.tables.slow_tx[self.slot] = True

    def stats(self) -> dict[str, Any]:
        if self._final is not None:
            return dict(self._final)  # closed: the figures at close (the CDR reads them after hang-up)
        stats = self.session.stats()
        tables, slot = self.owner.tables, self.slot
        source = self._sync_stats()
        (packets_in, bytes_in), (packets_out, bytes_out) = tables.stats_in(slot), tables.stats_out(slot)
        stats.update(
            remote=None if self.remote_key < 0 and self.sdp_key < 0 else "{}:{}".format(*key_address(self._dest())),
            packets_in=packets_in, bytes_in=bytes_in, packets_out=packets_out, bytes_out=bytes_out,
            lost=max(0, source.lost) if source.received else 0,
            loss_fraction=round(source.loss_fraction, 4) if source.received else 0.0,
            jitter_ms=round(source.jitter_ms, 2), concealed=int(tables.concealed[slot]),
            jitter_buffer_ms=int(tables.ring.delays[slot]) * 20, foreign=self.foreign, ignored=self.ignored,
            malformed=self.malformed, local_port=self.group.port if self.group else None,
            media_path="batched" if self.group is None or self.group.shared else "private",
        )  # fmt: skip
        return stats

    def close(self) -> None:
        """RTCP BYE, then the slot (and a private socket) is given back. Idempotent."""
        if self.closed:
            return
        self._final = self.stats()
        self.closed = True
        group, session = self.group, self.session
        if group is not None and session.remote_rtcp is not None and session.media is not None:
            try:
                group.rtcp.sendto(session.rtcp.build_bye(time.monotonic()), session.remote_rtcp)
            except OSError:
                pass
        self.owner.free_slot(self)

    # --- side paths (Python; called by BatchedMedia) -------------------------------------------------

    def side_rtp(self, data: bytes, key: int, now: float) -> None:
        """One datagram of this leg that is not steady audio (see :mod:`bridge.rtp.shared`)."""
        self.python_packets += 1
        session = self.session
        if len(data) < 12:
            self.malformed += 1
            return
        first, second, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        pt = second & 0x7F
        media = session.media
        if media is None:
            self.ignored += 1
            return
        if pt != media.payload_type and pt != media.dtmf_payload_type:
            if 192 <= second <= 223 and first & 0xC0 == 0x80 and (not self.latched or key == self.remote_key):
                session.rtcp.receive(data, now)  # RTCP multiplexed on the RTP port (RFC 5761)
            else:
                self.ignored += 1
            return
        try:
            payload = data[12:] if first == 0x80 else RtpPacket.parse(data).payload
        except PacketError:
            self.malformed += 1
            return
        if not self._latch(key):
            return
        tables, slot = self.owner.tables, self.slot
        if tables.ssrc_in[slot] != ssrc:
            tables.reset_source(slot, ssrc, seq)
            session.digits.extend(session._dtmf_rx.flush())
        one = np.array([slot], dtype=np.int64)
        tables.account(one, np.array([seq]), np.array([ts]), now)
        tables.packets_in[slot] += 1
        tables.bytes_in[slot] += len(data)
        tables.last_rx[slot] = now
        if pt == media.payload_type:
            if session._dtmf_rx.pending:
                session.digits.extend(session._dtmf_rx.audio(ts))
            if len(payload) == FRAME:
                tables.ring.push(one, np.array([(ts // FRAME) % (1 << 16)]),
                                 np.frombuffer(payload, dtype=np.uint8).reshape(1, FRAME))  # fmt: skip
            else:
                self.ignored += 1  # only 20 ms packets (our SDP asks for a=ptime:20)
        else:
            session._inband_active = False  # RFC 4733 from the peer: in-band tones would be reported twice
            session.digits.extend(session._dtmf_rx.feed(ssrc, ts, payload))
        if tables.slow_rx[slot] != session._dtmf_rx.pending:
            tables.slow_rx[slot] = session._dtmf_rx.pending
            tables.refresh(slot)
        self._deliver_digits()

    def _latch(self, key: int) -> bool:
        if self.latched and key == self.remote_key:
            return True
        if self.latched and key != self.sdp_key:
            self.foreign += 1
            return False
        group = self.group
        assert group is not None
        other = group.by_latched.get(key) or group.by_sdp.get(key)
        if other is not None and other is not self:
            self.foreign += 1
            return False
        self.latched = True
        self.remote_key = key
        self.session.remote = key_address(key)
        self.owner.tables.remote_key[self.slot] = key
        self.owner.tables.sending[self.slot] = self.session._sending
        group.dirty = True
        return True

    def python_send(self, payload: bytes, now: float) -> None:
        """Send one tick in Python (DTMF being sent, or a frame from :meth:`write_frame`)."""
        session, tables, slot = self.session, self.owner.tables, self.slot
        if self.group is None or not tables.sending[slot]:
            return
        session._seq, session._ts = int(tables.seq_out[slot]), int(tables.ts_out[slot])
        session._marker = bool(tables.marker[slot])
        session.packets_out = session.bytes_out = 0  # the tables count what goes out
        packets = session.tick_packets(payload, now) if not session.dtmf_idle else [session.audio_packet(payload, now)]
        destination = key_address(self._dest())
        for packet in packets:
            try:
                self.group.rtp.sock.sendto(packet, destination)
            except OSError:
                pass
        tables.seq_out[slot], tables.ts_out[slot] = session._seq, session._ts
        tables.marker[slot] = session._marker
        tables.packets_out[slot] += session.packets_out
        tables.bytes_out[slot] += session.bytes_out
        session.packets_out = session.bytes_out = 0
        tables.last_send_time[slot] = now
        tables.slow_tx[slot] = not session.dtmf_idle

    def inband_frame(self, frame: np.ndarray | None) -> None:
        """This tick's received frame (None: nothing) for the in-band detector of an E1 leg."""
        session = self.session
        detector = session._inband
        if detector is None or not session._inband_active:
            return
        if frame is None:
            detector.silence()
        else:
            digit = detector.feed(session._decode.take(frame))
            if digit:
                session.digits.append(digit)
                self._deliver_digits()

    def housekeeping(self, now: float) -> None:
        """Once a second: RTCP report when due, RTP timeout."""
        session, group = self.session, self.group
        if session.media is None or group is None or self.closed:
            return
        tables, slot = self.owner.tables, self.slot
        if now >= self._next_rtcp:
            self._next_rtcp = now + RTCP_INTERVAL_S * random.uniform(0.5, 1.5)
            rtcp = session.rtcp
            rtcp.packets_sent = tables.stats_out(slot)[0]
            rtcp.octets_sent = rtcp.packets_sent * FRAME
            rtcp.last_rtp_timestamp = (int(tables.ts_out[slot]) - FRAME) & 0xFFFFFFFF
            rtcp.last_send_time = float(tables.last_send_time[slot])
            rtcp.source = self._sync_stats() if tables.received[slot] else None
            if session.remote_rtcp is not None:
                try:
                    group.rtcp.sendto(rtcp.build_report(now), session.remote_rtcp)
                except OSError:
                    pass
        fast_in = int(tables.fast_in[slot])
        if fast_in != self._seen_in:
            self._seen_in = fast_in
            tables.last_rx[slot] = now
        session.last_received = float(tables.last_rx[slot]) if tables.stats_in(slot)[0] else None
        if not self._timed_out and session.timed_out(now, self.rtp_timeout_s):
            self._timed_out = True
            log.info("RTP timeout on port %d after %.0f s without packets", group.port, self.rtp_timeout_s)
            try:
                self._on_timeout()
            except Exception:
                log.exception("on_timeout callback failed for port %d", group.port)

    # --- internals ------------------------------------------------------------------------------

    def _dest(self) -> int:
        return self.remote_key if self.latched else self.sdp_key

    def _sync_stats(self) -> ReceptionStats:
        tables, slot, source = self.owner.tables, self.slot, self._stats
        source.ssrc = int(tables.ssrc_in[slot]) & 0xFFFFFFFF
        source.base_seq, source.max_seq = int(tables.base_seq[slot]), int(tables.max_seq[slot])
        source.cycles, source.received = int(tables.cycles[slot]), int(tables.received[slot])
        source.jitter = float(tables.jitter[slot])
        return source

    def _deliver_digits(self) -> None:
        for digit in self.session.take_digits():
            try:
                self._on_dtmf(digit)
            except Exception:
                log.exception("on_dtmf callback failed")


def _key(media: MediaDescription | None) -> int | None:
    if media is None or not media.port or media.address in ("0.0.0.0", "::") or ":" in media.address:
        return None
    try:
        return address_key(media.address, media.port)
    except OSError:
        return None  # a host name in c=: not an address a shared socket can match
