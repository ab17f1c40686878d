"""asyncio glue for one leg's media: two UDP sockets (RTP on an even port, RTCP on the next) around a
:class:`~bridge.rtp.session.MediaSession`, plus one 1 s housekeeping timer (RTP timeout, RTCP reports).

Usage by the signalling layer and the engine::

    endpoint = await RtpEndpoint.open(loop, allocator, host="127.0.0.1", on_dtmf=leg.digit, on_timeout=leg.hangup)
    sdp = make_offer(public_address, endpoint.local_port, session_id=...)   # or answer_offer(...)
    endpoint.start(parse_answer(answer))        # again on every re-INVITE
    ...every 20 ms tick: frame = endpoint.read_frame(now); endpoint.write_frame(encoded)
    endpoint.close()

Callbacks run in the event loop, synchronously, from the packet or tick that caused them; an exception in a
callback is logged and does not disturb the media. For many legs, open endpoints with a shared
:class:`~bridge.rtp.poller.RtpPoller` and call its ``poll(now)`` at the start of each tick: RTP is then read
on the tick instead of one asyncio callback per packet (same API otherwise).

``transport.max_size`` is cut from asyncio's 256 KiB to 2048 bytes: asyncio allocates a ``max_size`` buffer
for every ``recvfrom`` (DESIGN.md: 4x faster).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from bridge.rtp.errors import EndpointError, PortsExhausted
from bridge.rtp.poller import RtpPoller
from bridge.rtp.ports import PortAllocator
from bridge.rtp.sdp import MediaDescription
from bridge.rtp.session import Address, MediaSession

__all__ = ["RtpEndpoint"]

log = logging.getLogger(__name__)

MAX_DATAGRAM = 2048
HOUSEKEEPING_S = 1.0
RTCP_INTERVAL_S = 5.0  # RFC 3550 §6.2 minimum, randomised to 0.5-1.5x (§6.3.1)


def _ignore_digit(digit: str) -> None:
    pass


def _ignore() -> None:
    pass


class _Socket(asyncio.DatagramProtocol):
    """Hands datagrams of one socket to a bound method; everything else stays in :class:`RtpEndpoint`."""

    def __init__(self, receive: Callable[[bytes, Address], None]) -> None:
        self.datagram_received = receive  # type: ignore[method-assign,assignment]  # skip one call level per packet

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: the RTP timeout deals with it.
        log.debug("RTP socket error: %s", exc)


def _plain_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _bind(
    loop: asyncio.AbstractEventLoop, host: str, port: int, receive: Callable[[bytes, Address], None]
) -> asyncio.DatagramTransport:
    transport, _ = await loop.create_datagram_endpoint(lambda: _Socket(receive), local_addr=(host, port))
    if hasattr(transport, "max_size"):
        transport.max_size = MAX_DATAGRAM  # selector transports; see the module docstring
    return transport


class RtpEndpoint:
    """One leg's RTP/RTCP sockets. Create with :meth:`open`; not thread-safe (event loop only)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        allocator: PortAllocator,
        port: int,
        session: MediaSession,
        *,
        on_dtmf: Callable[[str], None],
        on_timeout: Callable[[], None],
        rtp_timeout_s: float,
        rtcp_interval_s: float = RTCP_INTERVAL_S,
    ) -> None:
        self._loop = loop
        self._allocator = allocator
        self.local_port = port
        self.session = session
        self._on_dtmf = on_dtmf
        self._on_timeout = on_timeout
        self.rtp_timeout_s = rtp_timeout_s
        self.rtcp_interval_s = rtcp_interval_s
        self._rtp: asyncio.DatagramTransport | None = None  # asyncio mode
        self._sock: socket.socket | None = None  # poller mode
        self._poller: RtpPoller | None = None
        self.send_errors = 0
        self._rtcp: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._next_rtcp = 0.0
        self._timed_out = False
        self.closed = False

    @classmethod
    async def open(
        cls,
        loop: asyncio.AbstractEventLoop,
        allocator: PortAllocator,
        *,
        host: str,
        on_dtmf: Callable[[str], None] = _ignore_digit,
        inband_dtmf: bool = False,
        rtp_timeout_s: float = 30.0,
        on_timeout: Callable[[], None] = _ignore,
        rtcp_interval_s: float = RTCP_INTERVAL_S,
        poller: RtpPoller | None = None,
    ) -> RtpEndpoint:
        """Bind RTP + RTCP sockets on ``host`` at the allocator's next free even port.

        ``on_dtmf(digit)`` is called once per key press (RFC 4733, or in-band tones when ``inband_dtmf``);
        ``on_timeout()`` once when the peer should send RTP but nothing came for ``rtp_timeout_s``.
        RTCP reports go out every ``rtcp_interval_s`` (randomised 0.5-1.5x, checked once a second).
        With ``poller`` the RTP socket is read by :meth:`RtpPoller.poll` on the engine's tick instead of by
        asyncio (see :mod:`bridge.rtp.poller`); the media API is the same.
        Raises :class:`PortsExhausted` when no port pair of the range can be bound.
        """
        session = MediaSession(
            ssrc=secrets.randbits(32),
            sequence=secrets.randbits(16),
            timestamp=secrets.randbits(32),
            cname=f"bridge-{secrets.token_hex(6)}@{host}",
            ntp_offset=time.time() - loop.time(),
            inband_dtmf=inband_dtmf,
        )
        last_error: OSError | None = None
        for _ in range(max(1, allocator.capacity - allocator.in_use)):  # each free port at most once
            port = allocator.allocate()  # raises PortsExhausted when the range is empty
            endpoint = cls(
                loop,
                allocator,
                port,
                session,
                on_dtmf=on_dtmf,
                on_timeout=on_timeout,
                rtp_timeout_s=rtp_timeout_s,
                rtcp_interval_s=rtcp_interval_s,
            )
            try:
                if poller is None:
                    endpoint._rtp = await _bind(loop, host, port, endpoint._on_rtp)
                else:
                    endpoint._sock = _plain_socket(host, port)
                endpoint._rtcp = await _bind(loop, host, port + 1, endpoint._on_rtcp)
            except OSError as exc:  # taken by another process: skip it, it goes to the back of the queue
                last_error = exc
                if endpoint._rtp is not None:
                    endpoint._rtp.close()
                if endpoint._sock is not None:
                    endpoint._sock.close()
                    endpoint._sock = None
                allocator.release(port)
                continue
            if poller is not None and endpoint._sock is not None:
                poller.register(endpoint._sock, endpoint)
                endpoint._poller = poller
            endpoint._timer = loop.call_later(HOUSEKEEPING_S, endpoint._housekeeping)
            return endpoint
        raise PortsExhausted(f"could not bind an RTP/RTCP port pair on {host} ({last_error})")

    # --- media API -------------------------------------------------------------------------------------

    def start(self, media: MediaDescription) -> None:
        """Start (or update, on re-INVITE) the stream towards the remote ``media`` (symmetric RTP latching)."""
        if self.closed:
            raise EndpointError("start() on a closed RTP endpoint")
        now = self._loop.time()
        self.session.start(media, now)
        self._timed_out = False
        self._next_rtcp = now + self.rtcp_interval_s * random.uniform(0.5, 1.5)

    def read_frame(self, now: float) -> bytes | None:
        """One 20 ms, 160-byte encoded frame in the negotiated codec, or None (nothing: play silence)."""
        frame = self.session.read_frame(now)
        if self.session.digits:
            self._deliver_digits()
        return frame

    def write_frame(self, payload: bytes) -> None:
        """Send one 20 ms frame (160 bytes, negotiated codec). Dropped while the peer holds us / not started.

        Also the clock of outgoing DTMF: a digit queued by :meth:`send_dtmf` replaces the audio of the
        following ticks.
        """
        session = self.session
        if not session.sending or self.closed:
            return
        if session.dtmf_idle:
            packet = session.audio_packet(payload, self._loop.time())
            sock = self._sock
            if sock is None:
                self._rtp.sendto(packet, session.remote)  # type: ignore[union-attr]  # open: one of the two
                return
            try:
                sock.sendto(packet, session.remote)  # type: ignore[arg-type]  # sending implies a remote
            except OSError:  # full buffer, ICMP error: RTP is lossy by design; the RTP timeout handles a dead peer
                self.send_errors += 1
        else:
            for packet in session.tick_packets(payload, self._loop.time()):
                self._send(packet)

    def _send(self, packet: bytes) -> None:
        remote = self.session.remote
        if self._sock is not None:
            try:
                self._sock.sendto(packet, remote)  # type: ignore[arg-type]  # sending implies a remote
            except OSError:
                self.send_errors += 1
        elif self._rtp is not None:
            self._rtp.sendto(packet, remote)

    def send_dtmf(self, digit: str, duration_ms: int = 160) -> None:
        """Queue a digit, sent over the next ``write_frame`` ticks: RFC 4733 (start, updates, 3x end), or
        in-band tones when the peer did not negotiate telephone-event. Raises EndpointError before start()."""
        self.session.add_dtmf(digit, duration_ms)

    def stats(self) -> dict[str, Any]:
        """packets/bytes in/out, lost, loss_fraction, jitter_ms, codec, local_port, remote, RTCP figures."""
        stats = self.session.stats()
        stats["local_port"] = self.local_port
        stats["send_errors"] = self.send_errors
        return stats

    def close(self) -> None:
        """Send RTCP BYE, close both sockets and give the port back. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._rtcp is not None and self.session.remote_rtcp is not None and self.session.media is not None:
            try:
                self._rtcp.sendto(self.session.rtcp.build_bye(self._loop.time()), self.session.remote_rtcp)
            except OSError:  # pragma: no cover - best effort
                pass
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        self._rtp = self._rtcp = None
        if self._sock is not None:
            if self._poller is not None:
                self._poller.unregister(self._sock)
            self._sock.close()
            self._sock = None
        self._allocator.release(self.local_port)

    # --- glue ------------------------------------------------------------------------------------------

    def _on_rtp(self, data: bytes, addr: Address) -> None:
        session = self.session
        session.receive_rtp(data, addr, self._loop.time())
        if session.digits:
            self._deliver_digits()

    def datagram(self, data: bytes, addr: Address, arrival: float) -> None:
        """One RTP datagram read by the :class:`RtpPoller` (``arrival`` on the loop clock)."""
        session = self.session
        session.receive_rtp(data, addr, arrival)
        if session.digits:
            self._deliver_digits()

    def _on_rtcp(self, data: bytes, addr: Address) -> None:
        self.session.receive_rtcp(data, addr, self._loop.time())

    def _deliver_digits(self) -> None:
        for digit in self.session.take_digits():
            try:
                self._on_dtmf(digit)
            except Exception:
                log.exception("on_dtmf callback failed for port %d", self.local_port)

    def _housekeeping(self) -> None:
        if self.closed:
            return
        now = self._loop.time()
        self._timer = self._loop.call_later(HOUSEKEEPING_S, self._housekeeping)
        session = self.session
        if session.media is None:
            return
        if now >= self._next_rtcp:
            self._next_rtcp = now + self.rtcp_interval_s * random.uniform(0.5, 1.5)
            if session.remote_rtcp is not None and self._rtcp is not None:
                self._rtcp.sendto(session.rtcp.build_report(now), session.remote_rtcp)
        if not self._timed_out and session.timed_out(now, self.rtp_timeout_s):
            self._timed_out = True
            log.info("RTP timeout on port %d after %.0f s without packets", self.local_port, self.rtp_timeout_s)
            try:
                self._on_timeout()
            except Exception:
                log.exception("on_timeout callback failed for port %d", self.local_port)
