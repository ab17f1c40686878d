"""Tick-driven RTP receive: one ``epoll`` over the RTP sockets of many legs, drained once per 20 ms tick.

Why. In the default mode every RTP datagram costs an asyncio selector wake-up, a ``_read_ready`` call and a
protocol callback; at 2,000 legs that is 100,000 Python-level callbacks a second before any media work.
The engine already wakes every 20 ms for the mixer, so it can collect the packets itself: endpoints opened
with ``poller=`` keep their RTP socket out of asyncio, and :meth:`RtpPoller.poll` -- called at the start of
each tick, before ``read_frame`` -- asks one level-triggered ``epoll`` which sockets hold data, reads one
datagram from each, and asks again until nothing is ready (a socket with two packets is simply ready twice;
no ``BlockingIOError`` per socket), at most ``MAX_ROUNDS`` times. Sending goes straight to the socket (no
transport layer).

Arrival times. Packets may wait in the socket for up to a tick, so the tick's clock would blur the RFC 3550
jitter figure to 20 ms. With ``kernel_timestamps`` (the default) the kernel stamps each datagram on arrival
(``SO_TIMESTAMPNS``, read with ``recvmsg``: about 0.8 µs more per packet than ``recvfrom``), mapped onto the
loop clock; without it the tick's ``now`` is used (cheaper, jitter at tick resolution).

RTCP (a packet per leg every few seconds) stays on asyncio. Linux only (``select.epoll``).
"""

from __future__ import annotations

import select
import socket
import struct
import time
from typing import Any, Protocol

__all__ = ["DatagramSink", "RtpPoller"]

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux value; Python does not export it everywhere
MAX_DATAGRAM = 2048
MAX_ROUNDS = 4
"""At most this many datagrams per socket per :meth:`RtpPoller.poll`. Normal is one (20 ms of audio); a
backlog is read over the next ticks instead of in one unbounded loop: when the process is overloaded, the
kernel drops packets (as a network would) rather than the tick stalling for ever."""
_CMSG_SPACE = socket.CMSG_SPACE(16)
_TIMESPEC = struct.Struct("@qq")


class DatagramSink(Protocol):
    """What a registered socket's datagrams are handed to (an :class:`~bridge.rtp.endpoint.RtpEndpoint`)."""

    def datagram(self, data: bytes, addr: Any, arrival: float) -> None: ...


class RtpPoller:
    """Receives for every endpoint registered with it; see the module docstring."""

    def __init__(self, *, kernel_timestamps: bool = True) -> None:
        self.kernel_timestamps = kernel_timestamps
        self._epoll = select.epoll()
        self._endpoints: dict[int, tuple[socket.socket, DatagramSink]] = {}
        self.received = 0
        self.errors = 0

    def __len__(self) -> int:
        return len(self._endpoints)

    def register(self, sock: socket.socket, endpoint: DatagramSink) -> None:
        """Called by :meth:`RtpEndpoint.open`: ``sock`` (non-blocking) is now read by :meth:`poll`."""
        if self.kernel_timestamps:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._epoll.register(sock.fileno(), select.EPOLLIN)
        self._endpoints[sock.fileno()] = (sock, endpoint)

    def unregister(self, sock: socket.socket) -> None:
        """Called by :meth:`RtpEndpoint.close` before the socket is closed."""
        fd = sock.fileno()
        if self._endpoints.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def poll(self, now: float) -> int:
        """Read every datagram waiting on the registered sockets and hand it to its endpoint; ``now`` is the
        loop clock (``loop.time()``). Returns the number of datagrams read. Call once per tick."""
        epoll_poll = self._epoll.poll
        endpoints = self._endpoints
        count = 0
        if self.kernel_timestamps:
            offset = time.time() - now  # kernel stamps are wall-clock: map them onto the loop clock
            unpack = _TIMESPEC.unpack
            for _ in range(MAX_ROUNDS):
                ready = epoll_poll(0)
                if not ready:
                    break
                for fd, _ in ready:
                    entry = endpoints.get(fd)
                    if entry is None:
                        continue
                    try:
                        data, ancillary, _, addr = entry[0].recvmsg(MAX_DATAGRAM, _CMSG_SPACE)
                    except OSError:  # EAGAIN after a spurious wake-up, or an ICMP error queued on the socket
                        self.errors += 1
                        continue
                    arrival = now
                    if ancillary:
                        seconds, nanoseconds = unpack(ancillary[0][2])
                        arrival = seconds + nanoseconds * 1e-9 - offset
                    entry[1].datagram(data, addr, arrival)
                    count += 1
        else:
            for _ in range(MAX_ROUNDS):
                ready = epoll_poll(0)
                if not ready:
                    break
                for fd, _ in ready:
                    entry = endpoints.get(fd)
                    if entry is None:
                        continue
                    try:
                        data, addr = entry[0].recvfrom(MAX_DATAGRAM)
                    except OSError:
                        self.errors += 1
                        continue
                    entry[1].datagram(data, addr, now)
                    count += 1
        self.received += count
        return count

    def close(self) -> None:
        self._epoll.close()
        self._endpoints.clear()
