"""The witness check: ICMP echo (RFC 792) to a third address, sent from this process.

Why ICMP echo: the natural witness is the service LAN's default gateway, and routers answer ping while
they run no UDP or TCP service of ours. Why in-process rather than ``ping -c1 -W``: a probe is one
``sendto`` (the role machine probes every interval while the peer is late, 20 a second at the defaults),
where forking ping costs milliseconds on a busy 2-core machine, and iputils-ping is not installed on
the appliance image. A raw socket is used when we have CAP_NET_RAW (the HA service needs
CAP_NET_ADMIN for the VIP anyway), otherwise an unprivileged ping socket (``net.ipv4.ping_group_range``).

The packet code is pure; :class:`IcmpWitness` is the asyncio glue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import Callable

log = logging.getLogger(__name__)

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
PROBES_KEPT = 64  # probes whose send time is kept for their answer
_ECHO = struct.Struct("!BBHHH")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes = b"bridge-ha") -> bytes:
    header = _ECHO.pack(ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    return _ECHO.pack(ICMP_ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


def parse_echo_reply(data: bytes, *, with_ip_header: bool) -> tuple[int, int] | None:
    """``(ident, seq)`` of an echo reply, or None for anything else (other ICMP, short, bad header)."""
    if with_ip_header:
        if not data or data[0] >> 4 != 4:
            return None
        data = data[(data[0] & 0x0F) * 4 :]
    if len(data) < _ECHO.size:
        return None
    kind, code, _, ident, seq = _ECHO.unpack_from(data)
    if kind != ICMP_ECHO_REPLY or code != 0:
        return None
    return ident, seq


class IcmpWitness:
    """Sends echo requests to ``address``; calls ``on_answer(sent_at)`` for each matching reply, with the loop
    time its request was sent."""

    def __init__(self, address: str, on_answer: Callable[[float], None]) -> None:
        self.address = address
        self.on_answer = on_answer
        try:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            self.raw = True
        except PermissionError:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
            self.raw = False
        self.sock.setblocking(False)
        # A ping socket's identifier is its port, set by the kernel; a raw socket's is ours to choose.
        self.ident = (os.getpid() ^ id(self)) & 0xFFFF
        self.seq = 0
        self._sent: dict[int, float] = {}  # seq -> loop time, the last PROBES_KEPT probes
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def probe(self) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        if self._loop is not None:
            self._sent[self.seq] = self._loop.time()
            self._sent.pop((self.seq - PROBES_KEPT) & 0xFFFF, None)
        try:
            self.sock.sendto(echo_request(self.ident, self.seq), (self.address, 0))
        except OSError as exc:  # no route while our link is down: simply no answer
            log.debug("witness probe to %s failed: %s", self.address, exc)

    def _readable(self) -> None:
        while True:
            try:
                data, (source, _) = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("witness socket: %s", exc)
                return
            reply = parse_echo_reply(data, with_ip_header=self.raw)
            if reply is None or source != self.address:
                continue
            if self.raw and reply[0] != self.ident:
                continue  # another process's ping: a raw socket sees every echo reply
            sent_at = self._sent.pop(reply[1], None)
            if sent_at is not None:  # an answer to a probe we did not send (or forgot) proves nothing
                self.on_answer(sent_at)
