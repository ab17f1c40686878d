"""The batched RTP path (bridge.rtp.shared / sharedleg) on loopback sockets, driven through MixerMedia.

Phones are plain UDP sockets; the clock is a counter (no wall-clock thresholds): each test "tick" sends one
packet per phone, then runs ``MixerMedia.tick``, then reads what came back.
"""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

from bridge.conference.media import MixerMedia
from bridge.mixer.mixer import Mixer
from bridge.rtp.ports import PortAllocator
from bridge.rtp.sdp import MediaDescription
from bridge.rtp.shared import BatchedMedia
from bridge.rtp.sharedleg import BatchedLeg

TONE = bytes([0x10, 0x90] * 80)  # a loud PCMU square wave


class Phone:
    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.setblocking(False)
        self.seq = 100
        self.ts = 8000
        self.ssrc = 0x1234

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def send(self, to: int, payload: bytes = TONE, pt: int = 0) -> None:
        self.sock.sendto(struct.pack("!BBHII", 0x80, pt, self.seq, self.ts, self.ssrc) + payload, ("127.0.0.1", to))
        self.seq += 1
        self.ts += 160

    def drain(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(2048))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


def describe(port: int, *, dtmf: int | None = 101, direction: str = "sendrecv") -> MediaDescription:
    return MediaDescription(address="127.0.0.1", port=port, codec="PCMU", payload_type=0,
                            dtmf_payload_type=dtmf, direction=direction)  # fmt: skip


@pytest.fixture
def batched(allocator: PortAllocator) -> BatchedMedia:
    media = BatchedMedia(allocator, host="127.0.0.1")
    yield media
    media.close()


class Room:
    def __init__(self, batched: BatchedMedia) -> None:
        self.batched = batched
        self.media = MixerMedia(Mixer(), batched=batched)
        self.now = 1000.0
        self.digits: list[str] = []

    def join(self, sdp_port: int, *, inbound: bool = True) -> BatchedLeg:
        leg = BatchedLeg.open(self.batched, now=self.now, on_dtmf=self.digits.append, on_timeout=lambda: None)
        leg.place(describe(sdp_port) if inbound else None)
        leg.start(describe(sdp_port), self.now)
        self.media.attach(1, leg)
        return leg

    def tick(self) -> None:
        self.now += 0.02
        self.media.tick(self.now)


def loud(packets: list[bytes]) -> int:
    """How many received packets carry the tone (not silence/comfort)."""
    return sum(1 for p in packets if len(p) == 172 and np.frombuffer(p[12:], np.uint8).std() > 20)


def talk(room: Room, senders: list[tuple[Phone, int]], ticks: int = 30) -> None:
    for _ in range(ticks):
        for phone, port in senders:
            phone.send(port)
        room.tick()


def test_two_legs_share_one_socket_and_hear_each_other(batched: BatchedMedia) -> None:
    room = Room(batched)
    a, b = Phone(), Phone()
    leg_a, leg_b = room.join(a.port), room.join(b.port)
    assert leg_a.local_port == leg_b.local_port  # one shared socket
    talk(room, [(a, leg_a.local_port)])
    assert loud(b.drain()) > 20  # b hears a
    assert loud(a.drain()) == 0  # a does not hear itself
    assert leg_a.stats()["packets_in"] == 30 and leg_a.stats()["lost"] == 0
    assert batched.side_packets <= 2  # the first packet (latching, new SSRC); the rest on the steady path


def test_stranger_is_never_heard(batched: BatchedMedia) -> None:
    room = Room(batched)
    a, b, stranger, neighbour = Phone(), Phone(), Phone(host="127.0.0.2"), Phone()
    leg_a, leg_b = room.join(a.port), room.join(b.port)
    talk(room, [(stranger, leg_a.local_port)])  # another host, before anyone latched
    assert batched.stats()["foreign"] == 30
    talk(room, [(neighbour, leg_a.local_port)])  # the legs' host, another port: which leg? neither
    assert batched.stats()["ambiguous"] == 30
    talk(room, [(a, leg_a.local_port), (b, leg_b.local_port)], ticks=2)
    talk(room, [], ticks=8)  # their own audio played out (jitter delay, concealment)
    a.drain(), b.drain()
    talk(room, [(stranger, leg_a.local_port), (neighbour, leg_b.local_port)])  # after latching
    assert loud(a.drain()) == 0 and loud(b.drain()) == 0
    assert batched.stats()["foreign"] == 30 + 60
    assert leg_a.stats()["packets_in"] == 2 and leg_b.stats()["packets_in"] == 2


def test_same_sdp_address_gets_a_private_socket(batched: BatchedMedia) -> None:
    room = Room(batched)
    gateway, other = Phone(), Phone()
    leg_1 = room.join(gateway.port)
    leg_2 = room.join(gateway.port)  # the same gateway address and port: cannot be told apart
    leg_3 = room.join(other.port)
    assert leg_2.local_port != leg_1.local_port and leg_3.local_port == leg_1.local_port
    assert leg_2.stats()["media_path"] == "private"
    talk(room, [(gateway, leg_2.local_port)])
    assert loud(other.drain()) > 20  # the private leg is heard
    assert leg_2.stats()["packets_in"] == 30 and leg_1.stats()["packets_in"] == 0


def test_one_gateway_two_ports_and_a_gateway_sending_from_another_port(batched: BatchedMedia) -> None:
    room = Room(batched)
    gw_1, gw_2, listener = Phone(), Phone(), Phone()
    leg_1 = room.join(gw_1.port)
    talk(room, [(gw_1, leg_1.local_port)], ticks=2)  # latched before the next call arrives
    leg_2 = room.join(gw_2.port)
    asymmetric = Phone()  # the gateway advertises listener.port but sends from another port
    leg_3 = room.join(listener.port)
    assert len({leg_1.local_port, leg_2.local_port, leg_3.local_port}) == 1
    talk(room, [(gw_1, leg_1.local_port), (gw_2, leg_2.local_port), (asymmetric, leg_3.local_port)])
    assert leg_1.stats()["packets_in"] == 32 and leg_2.stats()["packets_in"] == 30
    assert leg_3.stats()["packets_in"] == 30  # latched to the other port of its SDP host
    assert loud(asymmetric.drain()) > 20  # and it is sent to where it sends from (symmetric RTP)


def test_rfc4733_in_and_out_on_the_shared_socket(batched: BatchedMedia) -> None:
    room = Room(batched)
    a, b = Phone(), Phone()
    leg_a, _ = room.join(a.port), room.join(b.port)
    talk(room, [(a, leg_a.local_port)], ticks=3)
    for end in (False, False, True, True, True):
        a.ts -= 160  # events keep the timestamp of the key press
        a.send(leg_a.local_port, bytes([5, 0x80 if end else 0, 0, 160]), pt=101)
        room.tick()
    assert room.digits == ["5"]
    a.drain()
    leg_a.send_dtmf("7")
    for _ in range(12):
        room.tick()
    events = [p for p in a.drain() if p[1] & 0x7F == 101]
    assert events and events[0][12] == 7 and leg_a.stats()["dtmf_sent"] == 1


def test_hold_stops_sending_and_close_frees_the_slot(batched: BatchedMedia) -> None:
    room = Room(batched)
    a, b = Phone(), Phone()
    leg_a, leg_b = room.join(a.port), room.join(b.port)
    leg_b.start(describe(b.port, direction="sendonly"), room.now)  # b puts us on hold
    talk(room, [(a, leg_a.local_port)], ticks=10)
    assert b.drain() == []
    room.media.detach(room.media._endpoints and next(iter(room.media._endpoints)))
    leg_a.close()
    assert len(batched) == 1


def test_an_endpoint_handed_from_lobby_to_conference_stays_bound(batched: BatchedMedia) -> None:
    room = Room(batched)
    a, b = Phone(), Phone()
    leg_a = BatchedLeg.open(batched, now=room.now, on_dtmf=room.digits.append, on_timeout=lambda: None)
    leg_a.place(describe(a.port))
    leg_a.start(describe(a.port), room.now)
    lobby = room.media.attach(-1, leg_a)  # the lobby's participant
    room.media.attach(1, leg_a)  # the conference attaches the same endpoint, then the lobby lets go
    room.media.detach(lobby)
    leg_b = room.join(b.port)
    talk(room, [(a, leg_a.local_port)])
    assert loud(b.drain()) > 20
    talk(room, [(b, leg_b.local_port)])
    assert loud(a.drain()) > 20


def test_housekeeping_is_spread_over_ticks_and_times_out_every_silent_leg(batched: BatchedMedia) -> None:
    from bridge.rtp.shared import HOUSEKEEPING_TICKS

    now = 1000.0
    timed_out: list[int] = []
    legs = []
    for i in range(4 * HOUSEKEEPING_TICKS):  # nobody ever sends: every leg must time out
        leg = BatchedLeg.open(batched, now=now, on_dtmf=lambda d: None, on_timeout=lambda i=i: timed_out.append(i),
                              rtp_timeout_s=5.0)  # fmt: skip
        leg.start(describe(20000 + 2 * i), now)
        legs.append(leg)
    per_tick: list[int] = []
    for _ in range(int(7.0 / 0.02)):
        now += 0.02
        before = len(timed_out)
        batched.receive(now)
        per_tick.append(len(timed_out) - before)
    assert sorted(timed_out) == list(range(len(legs)))  # each leg once
    assert max(per_tick) == 4  # a slice per tick, never the whole sweep in one tick


def test_a_lost_frame_is_concealed_quieter_and_a_silent_caller_fades_out(batched: BatchedMedia) -> None:
    from bridge.mixer.g711 import DECODE_TABLES

    def level(packet: bytes) -> float:
        return float(np.abs(DECODE_TABLES["PCMU"][np.frombuffer(packet[12:], np.uint8)].astype(np.float64)).mean())

    room = Room(batched)
    a, b = Phone(), Phone()
    leg_a, _ = room.join(a.port), room.join(b.port)
    talk(room, [(a, leg_a.local_port)], ticks=20)
    a.seq, a.ts = a.seq + 1, a.ts + 160  # one packet lost on the way
    talk(room, [(a, leg_a.local_port)], ticks=10)
    for _ in range(10):  # then the caller goes quiet for good
        room.tick()
    levels = [level(p) for p in b.drain() if len(p) == 172]
    full = max(levels)
    steps = [round(x / full, 2) for x in levels]
    gap = steps.index(0.5)  # the lost frame: the one before, 6 dB quieter, instead of a hole
    assert steps[gap - 1] == 1.0 and steps[gap + 1] == 1.0
    tail = steps[steps.index(1.0, gap + 1) :]
    fade = tail[tail.index(0.5) - 1 :][:5]
    assert fade == pytest.approx([1.0, 0.5, 0.25, 0.125, 0.0], abs=0.02)  # 3 concealed frames, then silence
    assert leg_a.stats()["concealed"] == 4
