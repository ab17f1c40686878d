"""The glue's pure packet code: the gratuitous ARP frame, ICMP echo, and the settings' validation."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.ha.errors import SettingsError
from bridge.ha.settings import HaSettings
from bridge.ha.vip import gratuitous_arp
from bridge.ha.witness import checksum, echo_request, parse_echo_reply

MAC = bytes.fromhex("02aabbccddee")


def test_gratuitous_arp_is_an_rfc5227_announcement() -> None:
    frame = gratuitous_arp(MAC, "10.0.0.100")
    assert len(frame) == 42
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == MAC and frame[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, oper = struct.unpack("!HHBBH", frame[14:22])
    assert (htype, ptype, hlen, plen, oper) == (1, 0x0800, 6, 4, 1)
    assert frame[22:28] == MAC and frame[28:32] == bytes([10, 0, 0, 100])
    assert frame[32:38] == b"\x00" * 6 and frame[38:42] == frame[28:32]  # sender IP = target IP
    with pytest.raises(ValueError, match="6 bytes"):
        gratuitous_arp(b"\x00", "10.0.0.1")


def test_echo_request_checksums_to_zero_and_a_reply_parses() -> None:
    request = echo_request(0x1234, 7)
    assert request[0] == 8 and checksum(request) == 0
    reply = bytes([0]) + request[1:]
    assert parse_echo_reply(reply, with_ip_header=False) == (0x1234, 7)
    ip_header = bytes([0x45]) + b"\x00" * 19
    assert parse_echo_reply(ip_header + reply, with_ip_header=True) == (0x1234, 7)
    assert parse_echo_reply(request, with_ip_header=False) is None  # a request is not an answer


@given(st.binary(max_size=64), st.booleans())
def test_any_bytes_are_a_reply_or_none(data: bytes, with_ip_header: bool) -> None:
    result = parse_echo_reply(data, with_ip_header=with_ip_header)
    assert result is None or len(result) == 2


GOOD: dict[str, Any] = dict(
    node_id="a", peer_node_id="b", local_addresses=("10.0.0.1", "10.1.0.1"), peer_addresses=("10.0.0.2", "10.1.0.2"),
    key=b"k" * 16, interface="eth0", vip="10.0.0.100", witness="10.0.0.254",
)  # fmt: skip


def test_settings_defaults_and_validation() -> None:
    settings = HaSettings(**GOOD)
    assert settings.miss_window_s == pytest.approx(0.2)
    changes: list[tuple[dict[str, Any], str]] = [
        ({"peer_node_id": "a"}, "both 'a'"),
        ({"peer_addresses": ("10.0.0.2",)}, "one local and one peer address per path"),
        ({"vip": "10.0.0.300"}, "not an IPv4 address"),
        ({"key": b"short"}, "at least 16 bytes"),
        ({"miss_count": 1}, "miss_count 1"),
        ({"witness_timeout_s": 0.6}, "two witness probes"),
    ]
    for change, message in changes:
        with pytest.raises(SettingsError, match=message):
            HaSettings(**{**GOOD, **change})
