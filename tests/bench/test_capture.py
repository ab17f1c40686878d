"""bench/capture.py's pure part: the BPF program (run here through a small classic-BPF interpreter) and the
frame parser."""

from __future__ import annotations

import socket
import struct

import pytest

from bench.capture import IPPROTO_TCP, IPPROTO_UDP, Rule, bpf_program, parse_frame


def frame(proto: int, sport: int, dport: int, payload: bytes = b"x", *, fragment: int = 0, ihl: int = 5) -> bytes:
    if proto == IPPROTO_UDP:
        l4 = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    else:
        l4 = struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x18, 1024, 0, 0) + payload
    options = b"\x01" * (4 * (ihl - 5))
    ip = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(l4), 0, fragment, 64, proto, 0,
                     socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.2"))  # fmt: skip
    return b"\x00" * 12 + b"\x08\x00" + ip + options + l4


def run_bpf(program: list[tuple[int, int, int, int]], packet: bytes) -> int:
    """Classic BPF for the opcodes bpf_program emits (linux/filter.h semantics)."""
    a = x = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == 0x28:
            a = struct.unpack_from(">H", packet, k)[0]
        elif code == 0x30:
            a = packet[k]
        elif code == 0x48:
            a = struct.unpack_from(">H", packet, x + k)[0]
        elif code == 0xB1:
            x = 4 * (packet[k] & 0x0F)
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x45:
            pc += jt if a & k else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


RULES = [Rule(IPPROTO_UDP, "dst", 4000), Rule(IPPROTO_TCP, "src", 2775)]


@pytest.mark.parametrize(
    ("packet", "kept"),
    [
        (frame(IPPROTO_UDP, 1234, 4000), True),
        (frame(IPPROTO_UDP, 4000, 1234), False),  # the port on the other side
        (frame(IPPROTO_TCP, 2775, 50000), True),
        (frame(IPPROTO_TCP, 50000, 2775), False),
        (frame(IPPROTO_TCP, 1234, 4000), False),  # the UDP rule's port over TCP
        (frame(IPPROTO_UDP, 1234, 4000, ihl=7), True),  # IP options move the ports
        (frame(IPPROTO_UDP, 1234, 4000, fragment=185), False),  # a later fragment has no ports
        (b"\x00" * 12 + b"\x86\xdd" + bytes(60), False),  # IPv6
    ],
)
def test_the_filter_keeps_exactly_the_packets_a_rule_names(packet: bytes, kept: bool) -> None:
    assert (run_bpf(bpf_program(RULES), packet) > 0) is kept


def test_a_filter_needs_rules_with_a_side() -> None:
    with pytest.raises(ValueError):
        bpf_program([])
    with pytest.raises(ValueError):
        bpf_program([Rule(IPPROTO_UDP, "both", 1)])


def test_frames_parse_to_addresses_and_payload() -> None:
    udp = parse_frame(frame(IPPROTO_UDP, 1234, 4000, b"rtp"), 5.0)
    assert udp is not None and (udp.src, udp.dst, udp.payload, udp.time) == (
        ("127.0.0.1", 1234), ("127.0.0.2", 4000), b"rtp", 5.0)  # fmt: skip
    tcp = parse_frame(frame(IPPROTO_TCP, 2775, 50000, b"pdu", ihl=6), 1.0)
    assert tcp is not None and (tcp.proto, tcp.src[1], tcp.payload) == (IPPROTO_TCP, 2775, b"pdu")


def test_other_and_truncated_frames_are_none() -> None:
    good = frame(IPPROTO_UDP, 1, 2, b"abc")
    assert parse_frame(good[:30], 0.0) is None
    assert parse_frame(good[: 14 + 20 + 4], 0.0) is None
    assert parse_frame(b"\x00" * 12 + b"\x86\xdd" + bytes(60), 0.0) is None
    icmp = bytearray(good)
    icmp[14 + 9] = 1
    assert parse_frame(bytes(icmp), 0.0) is None
