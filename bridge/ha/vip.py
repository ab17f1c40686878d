"""Floating IP glue: ``ip addr`` to add and remove the VIP, gratuitous ARP, link state, ``IP_FREEBIND``.

Why ``ip addr`` (iproute2) rather than netlink from Python: two commands a takeover, ~3 ms each, and the
error texts are the kernel's own; pyroute2 would be a dependency for two messages.

Why a raw ``AF_PACKET`` gratuitous ARP rather than ``arping -U``: it leaves in microseconds from this
process (no fork and exec on the takeover's critical path, no iputils-arping to install), and the frame
is 42 bytes we build ourselves (RFC 5227 §2.3 ARP announcement: an ARP request whose sender and target
protocol addresses are both the VIP). Hosts and switches on the LAN move the VIP's MAC at once; without
it a client keeps sending to the old node until its ARP entry goes stale (4.4-5.2 s measured in the lab).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import ipaddress
import logging
import socket
import struct

log = logging.getLogger(__name__)

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
BROADCAST = b"\xff" * 6
SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
IFF_RUNNING = 0x40


def gratuitous_arp(mac: bytes, address: str) -> bytes:
    """The Ethernet frame announcing that ``address`` is at ``mac`` (RFC 5227 §2.3)."""
    if len(mac) != 6:
        raise ValueError(f"an Ethernet MAC is 6 bytes, got {len(mac)}")
    ip = ipaddress.IPv4Address(address).packed
    ethernet = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, ARPOP_REQUEST) + mac + ip + b"\x00" * 6 + ip
    return ethernet + arp


def send_gratuitous_arp(interface: str, address: str) -> None:
    """Send one gratuitous ARP for ``address`` out of ``interface`` (needs CAP_NET_RAW)."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
        sock.bind((interface, 0))
        mac = sock.getsockname()[4]
        sock.send(gratuitous_arp(mac, address))


def link_is_up(interface: str) -> bool:
    """Administratively up and with carrier (``IFF_UP`` and ``IFF_RUNNING``); a missing interface is down.

    An ioctl on a socket answers for the caller's network namespace, whatever /sys is mounted from."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, struct.pack("16sH22x", interface.encode(), 0))
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                return False
            raise
    flags: int = struct.unpack_from("16sH", answer)[1]
    return flags & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING


def freebind_socket(address: str, port: int, kind: int = socket.SOCK_DGRAM) -> socket.socket:
    """A socket bound to ``address`` even before that address exists here (the standby binding the VIP).

    With ``IP_FREEBIND`` the service listens on the VIP from the start; when the VIP arrives packets flow
    with no rebind, and replies always leave with the VIP as source."""
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


class FloatingIp:
    """Adds and removes one VIP on one interface, announcing it with gratuitous ARP."""

    def __init__(self, *, interface: str, address: str, prefix: int, garp_count: int, garp_interval_s: float) -> None:
        self.interface = interface
        self.address = address
        self.prefix = prefix
        self.garp_count = garp_count
        self.garp_interval_s = garp_interval_s
        self._garp_task: asyncio.Task[None] | None = None

    async def add(self) -> None:
        await _ip("addr", "add", f"{self.address}/{self.prefix}", "dev", self.interface, tolerate=("File exists",))
        self._cancel_garp()
        self._garp_task = asyncio.get_running_loop().create_task(self._announce())

    async def remove(self) -> None:
        self._cancel_garp()
        await _ip(
            "addr", "del", f"{self.address}/{self.prefix}", "dev", self.interface,
            tolerate=("Cannot assign requested address", "Address not found"),
        )  # fmt: skip

    async def _announce(self) -> None:
        for index in range(self.garp_count):
            if index:
                await asyncio.sleep(self.garp_interval_s)
            try:
                send_gratuitous_arp(self.interface, self.address)
            except OSError as exc:  # link down right now: the next one may get out
                log.warning("gratuitous ARP for %s on %s failed: %s", self.address, self.interface, exc)

    def _cancel_garp(self) -> None:
        if self._garp_task is not None:
            self._garp_task.cancel()
            self._garp_task = None


async def _ip(*args: str, tolerate: tuple[str, ...]) -> None:
    """Run ``ip`` with ``args``; an error whose text contains one of ``tolerate`` means it is already so
    (the texts differ between iproute2 versions)."""
    process = await asyncio.create_subprocess_exec(
        "ip", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    text = stderr.decode(errors="replace").strip()
    if process.returncode and not any(part in text for part in tolerate):
        raise OSError(f"ip {' '.join(args)}: exit {process.returncode}: {text}")
