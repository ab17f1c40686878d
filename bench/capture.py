"""A loopback packet capture for the latency benches (``bench/latency.py``, ``bench/ic_launch.py``): a raw
``AF_PACKET`` socket on ``lo`` (root), a classic BPF filter built here so the kernel hands over only the
packets a bench asked for, and the kernel's receive timestamp of each packet (``SO_TIMESTAMPNS``,
CLOCK_REALTIME), so a busy Python reader does not add its own delay to the figures.

On ``lo`` every packet is seen twice (leaving and arriving, the same instant); only the outgoing copy is kept.
The pure part (:func:`bpf_program`, :func:`parse_frame`) is unit-tested in ``tests/bench/``.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import threading
import time
from dataclasses import dataclass

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
IPPROTO_TCP = 6
IPPROTO_UDP = 17
ETH_HEADER = 14

# classic BPF opcodes (linux/filter.h)
_LD_H_ABS, _LD_B_ABS, _LD_H_IND = 0x28, 0x30, 0x48
_LDX_B_MSH = 0xB1
_JEQ_K, _JSET_K = 0x15, 0x45
_RET_K = 0x06


@dataclass(frozen=True)
class Rule:
    """Keep IPv4 packets of ``proto`` (6 TCP, 17 UDP) whose ``side`` (``"src"``/``"dst"``) port is ``port``."""

    proto: int
    side: str
    port: int


Instruction = tuple[int, int, int, int]  # code, jt, jf, k


def bpf_program(rules: list[Rule]) -> list[Instruction]:
    """A classic BPF program for Ethernet frames (``lo``) accepting the packets any rule matches, dropping
    the rest (non-IPv4, IP fragments after the first, other protocols and ports)."""
    if not rules:
        raise ValueError("bpf_program needs at least one rule")
    Op = tuple[int, int | str, int | str, int]  # jump targets may be labels
    body: list[Op | str] = [(_LD_H_ABS, 0, 0, 12), (_JEQ_K, 0, "drop", ETH_P_IP)]
    for i, rule in enumerate(rules):
        if rule.side not in ("src", "dst"):
            raise ValueError(f"rule side must be 'src' or 'dst', not {rule.side!r}")
        nxt = f"rule{i + 1}" if i + 1 < len(rules) else "drop"
        body += [
            f"rule{i}",
            (_LD_B_ABS, 0, 0, ETH_HEADER + 9),
            (_JEQ_K, 0, nxt, rule.proto),
            (_LD_H_ABS, 0, 0, ETH_HEADER + 6),
            (_JSET_K, nxt, 0, 0x1FFF),  # a fragment other than the first has no ports
            (_LDX_B_MSH, 0, 0, ETH_HEADER),
            (_LD_H_IND, 0, 0, ETH_HEADER + (0 if rule.side == "src" else 2)),
            (_JEQ_K, "accept", nxt, rule.port),
        ]
    body += ["accept", (_RET_K, 0, 0, 0x40000), "drop", (_RET_K, 0, 0, 0)]
    labels: dict[str, int] = {}
    ops: list[Op] = []
    for item in body:
        if isinstance(item, str):
            labels[item] = len(ops)
        else:
            ops.append(item)

    def offset(target: int | str, pc: int) -> int:
        return labels[target] - pc - 1 if isinstance(target, str) else target

    return [(code, offset(jt, pc), offset(jf, pc), k) for pc, (code, jt, jf, k) in enumerate(ops)]


@dataclass(frozen=True)
class Packet:
    """One captured IPv4 TCP/UDP packet: kernel time (s, CLOCK_REALTIME), addresses and the L4 payload."""

    time: float
    proto: int
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def parse_frame(frame: bytes, when: float) -> Packet | None:
    """The packet in an Ethernet frame, or None when it is not IPv4 TCP/UDP or is truncated."""
    if len(frame) < ETH_HEADER + 20 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[ETH_HEADER:]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack_from(">H", ip, 2)[0]
    proto = ip[9]
    if ip[0] >> 4 != 4 or ihl < 20 or len(ip) < min(total, ihl + 8) or proto not in (IPPROTO_TCP, IPPROTO_UDP):
        return None
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    l4 = ip[ihl:total]
    if proto == IPPROTO_UDP:
        if len(l4) < 8:
            return None
        sport, dport = struct.unpack_from(">HH", l4)
        payload = l4[8:]
    else:
        if len(l4) < 20 or len(l4) < (l4[12] >> 4) * 4:
            return None
        sport, dport = struct.unpack_from(">HH", l4)
        payload = l4[(l4[12] >> 4) * 4 :]
    return Packet(when, proto, (src, sport), (dst, dport), payload)


class Capture:
    """Capture the packets ``rules`` select on ``lo`` in a thread until :meth:`stop`; :attr:`packets` in order."""

    def __init__(self, rules: list[Rule], *, buffer_bytes: int = 32 << 20) -> None:
        self.packets: list[Packet] = []
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        program = bpf_program(rules)
        self._filter = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in program))
        fprog = struct.pack("HL", len(program), ctypes.addressof(self._filter))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, buffer_bytes)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(("lo", ETH_P_ALL))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, ancillary, _flags, address = self.sock.recvmsg(65536, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] != PACKET_OUTGOING:
                continue
            when = time.time()
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = struct.unpack_from("qq", data)
                    when = sec + nsec * 1e-9
            packet = parse_frame(frame, when)
            if packet is not None:
                self.packets.append(packet)

    def stop(self) -> list[Packet]:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        return self.packets
