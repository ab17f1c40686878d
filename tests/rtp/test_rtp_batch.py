"""Batched RTP: vectorised parsing against ``RtpPacket.parse``, the vectorised jitter buffer against a
per-leg reference model, and ``recvmmsg``/``sendmmsg`` against plain sockets on loopback."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rtp.batch import (
    CALM_POPS,
    LATE_RESTART,
    SEQ_MOD,
    BatchSocket,
    FrameRing,
    address_key,
    key_address,
    parse_rtp,
    rounds,
)
from bridge.rtp.errors import PacketError, RtpError
from bridge.rtp.legtables import LegTable
from bridge.rtp.packet import RtpPacket
from tests.rtp.test_rtp_packet import rtp_packets  # tests/rtp is on sys.path (pytest rootdir-relative import)

WIDTH = 320


def as_rows(datagrams: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.frombuffer(b"".join(d.ljust(WIDTH, b"\xaa")[:WIDTH] for d in datagrams), dtype=np.uint8)
    return rows.reshape(len(datagrams), WIDTH).copy(), np.array([len(d) for d in datagrams], dtype=np.int64)


def padded(packet: RtpPacket, pad: int) -> bytes:
    raw = bytearray(bytes(packet))
    raw[0] |= 0x20
    return bytes(raw) + bytes(pad - 1) + bytes([pad])


datagrams = st.one_of(
    rtp_packets.map(bytes),
    st.tuples(rtp_packets, st.integers(1, 8)).map(lambda t: padded(*t)),
    st.binary(max_size=60),  # garbage: short, wrong version, bad padding, truncated CSRC/extension
    rtp_packets.map(bytes).flatmap(lambda b: st.integers(0, len(b)).map(lambda k: b[:k])),  # truncated
    st.binary(min_size=WIDTH + 1, max_size=WIDTH + 8),  # longer than a row: never valid
)


@given(st.lists(datagrams, min_size=1, max_size=12))
@settings(max_examples=300, deadline=None)
def test_parse_rtp_agrees_with_rtppacket_parse(batch: list[bytes]) -> None:
    data, lengths = as_rows(batch)
    heads = parse_rtp(data, lengths)
    for i, raw in enumerate(batch):
        try:
            packet = RtpPacket.parse(raw) if len(raw) <= WIDTH else None
        except PacketError:
            packet = None
        assert bool(heads.valid[i]) == (packet is not None), raw.hex()
        if packet is None:
            continue
        start, size = int(heads.payload_offset[i]), int(heads.payload_length[i])
        assert bytes(data[i, start : start + size]) == packet.payload
        assert int(heads.seq[i]) == packet.sequence_number
        assert int(heads.timestamp[i]) == packet.timestamp
        assert int(heads.ssrc[i]) == packet.ssrc
        assert int(heads.payload_type[i]) == packet.payload_type
        assert bool(heads.marker[i]) == packet.marker


# --------------------------------------------------------------------------- FrameRing


class ReferenceRing:
    """The FrameRing rules for one leg, written the obvious way."""

    def __init__(self, depth: int, delay: int) -> None:
        self.depth, self.delay = depth, delay
        self.next: int | None = None
        self.pending: dict[int, bytes] = {}
        self.late = 0
        self.late_run = 0

    def push(self, seq: int, payload: bytes) -> None:
        seq %= SEQ_MOD
        if self.next is not None:
            ahead = (seq - self.next) % SEQ_MOD
            behind = (self.next - seq) % SEQ_MOD
            if 0 < behind <= self.depth and self.late_run < LATE_RESTART - 1:
                self.late += 1
                self.late_run += 1
                return
            self.late_run = 0
            if ahead < self.depth and not 0 < behind <= self.depth:
                self.pending[seq] = payload
                return
        self.next = (seq - self.delay) % SEQ_MOD
        self.pending = {seq: payload}

    def pop(self, silence: bytes) -> bytes | None:
        if self.next is None:
            return None
        frame = self.pending.pop(self.next, None)
        self.pending = {s: p for s, p in self.pending.items() if (s - self.next) % SEQ_MOD < self.depth}
        self.next = (self.next + 1) % SEQ_MOD
        return frame


def frame_of(leg: int, seq: int) -> bytes:
    return bytes([(leg * 31 + seq) % 251]) * 4


# One tick: a list of (leg, seq) packets pushed in one batch, then one pop.
ticks = st.lists(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, SEQ_MOD - 1) | st.integers(65530, 65535)), max_size=5),
    min_size=1,
    max_size=30,
)


@given(ticks, st.integers(0, 7))
@settings(max_examples=300, deadline=None)
def test_frame_ring_matches_the_per_leg_model(schedule: list[list[tuple[int, int]]], start: int) -> None:
    ring = FrameRing(3, depth=8, delay=2, frame=4, silence=0xFF)
    models = [ReferenceRing(8, 2) for _ in range(3)]
    for packets in schedule:
        # Make most sequences plausible (near a per-leg running counter) and keep some wild ones.
        if packets:
            legs = np.array([leg for leg, _ in packets], dtype=np.int64)
            seqs = np.array([seq if seq % 3 == 0 else start + seq % 6 for _, seq in packets], dtype=np.int64)
            pairs = list(zip(legs.tolist(), seqs.tolist(), strict=True))
            payloads = np.frombuffer(b"".join(frame_of(leg, s) for leg, s in pairs), dtype=np.uint8)
            ring.push(legs, seqs, payloads.reshape(len(packets), 4))
            for leg, s in pairs:
                models[leg].push(s, frame_of(leg, s))
        start += 1
        out, hit = ring.pop()
        for leg, model in enumerate(models):
            expected = model.pop(b"\xff" * 4)
            assert bool(hit[leg]) == (expected is not None)
            assert bytes(out[leg]) == (expected if expected is not None else b"\xff" * 4)
    assert ring.late == sum(m.late for m in models)


def test_frame_ring_plays_in_order_after_the_delay_and_reorders() -> None:
    ring = FrameRing(1, depth=8, delay=2, frame=2)
    got = []
    arrivals = [[65534], [], [0, 65535], [1], [2], [], [], []]  # 65535 late by a tick, across the wrap
    for batch in arrivals:
        if batch:
            ring.push(
                np.zeros(len(batch), np.int64), np.array(batch), np.array([[s % 256, 0] for s in batch], np.uint8)
            )
        out, hit = ring.pop()
        got.append(int(out[0, 0]) if hit[0] else None)
    assert got == [None, None, 254, 255, 0, 1, 2, None]


def test_frame_ring_restarts_after_a_sequence_jump_and_drops_late_packets() -> None:
    ring = FrameRing(1, depth=8, delay=1, frame=1)
    leg = np.zeros(1, np.int64)
    played = []
    for seq in (100, 101, 102):
        ring.push(leg, np.array([seq]), np.array([[seq % 256]], np.uint8))
        out, hit = ring.pop()
        played.append(int(out[0, 0]) if hit[0] else None)
    assert played == [None, 100, 101]  # one frame of delay
    ring.push(leg, np.array([99]), np.array([[1]], np.uint8))  # 3 behind the play-out point: late
    assert ring.late == 1
    ring.push(leg, np.array([5000]), np.array([[7]], np.uint8))  # a jump (re-INVITE): restart there
    assert ring.resyncs == 2
    played = []
    for _ in range(2):
        out, hit = ring.pop()
        played.append(int(out[0, 0]) if hit[0] else None)
    assert played == [None, 7]  # 102 was dropped with the restart; 5000 plays after the delay
    ring.push(leg, np.array([5001]), np.array([[8]], np.uint8))
    ring.reset(0)  # a new call on this leg slot: nothing from the old one plays
    out, hit = ring.pop()
    assert not hit[0] and out[0, 0] == 0xFF


def test_an_adaptive_frame_ring_grows_on_a_late_packet_and_shrinks_when_calm() -> None:
    ring = FrameRing(1, depth=8, delay=2, frame=1, adapt=(1, 4))
    leg = np.zeros(1, np.int64)

    def tick(*seqs: int) -> int | None:
        for seq in seqs:
            ring.push(leg, np.array([seq]), np.array([[seq % 256]], np.uint8))
        out, hit = ring.pop()
        return int(out[0, 0]) if hit[0] else None

    played = [tick(seq) for seq in range(10)]
    assert played[2:] == list(range(8)) and ring.delays[0] == 2  # two frames behind
    assert [tick(), tick(11), tick(12)] == [8, 9, None]  # 10 is not there when it is due
    assert tick(10, 13) == 10  # 10 arrives one frame late: the play-out point steps back and plays it
    assert ring.delays[0] == 3 and ring.late == 0
    played = [tick(seq) for seq in range(14, 14 + CALM_POPS + 2)]
    assert ring.delays[0] == 2  # CALM_POPS frames without a late one: one frame less delay
    assert played[:3] == [11, 12, 13]
    steps = [(b - a) % 256 for a, b in zip(played, played[1:], strict=False)]  # payload = seq % 256
    assert steps.count(1) == len(steps) - 1 and steps.count(2) == 1  # in order, one frame skipped


def test_an_adaptive_frame_ring_drains_a_burst_back_to_its_delay() -> None:
    ring = FrameRing(1, depth=8, delay=1, frame=1, adapt=(0, 3))
    leg = np.zeros(1, np.int64)

    def tick(*seqs: int) -> int | None:
        for seq in seqs:
            ring.push(leg, np.array([seq]), np.array([[seq]], np.uint8))
        out, hit = ring.pop()
        return int(out[0, 0]) if hit[0] else None

    assert [tick(seq) for seq in range(5)] == [None, 0, 1, 2, 3]  # one frame behind
    assert tick(5, 6, 7, 8, 9) == 6  # a burst of early frames: beyond delay + 2 queued, 4 and 5 are skipped
    assert [tick(10), tick(11)] == [7, 8]  # 2 frames of slack kept, as the per-socket buffer does
    assert ring.delays[0] == 1


def test_an_adaptive_frame_ring_starts_behind_the_newest_packet_of_the_first_batch() -> None:
    ring = FrameRing(1, depth=8, delay=1, frame=1, adapt=(0, 3))
    leg = np.zeros(2, np.int64)
    ring.push(leg, np.array([10, 11]), np.array([[10], [11]], np.uint8))  # two packets in the first batch
    played = []
    for seq in range(12, 16):
        out, hit = ring.pop()
        played.append(int(out[0, 0]) if hit[0] else None)
        ring.push(leg[:1], np.array([seq]), np.array([[seq]], np.uint8))
    assert played == [10, 11, 12, 13]  # one frame behind the newest from the start, as later on


def test_frame_ring_rejects_a_delay_outside_the_ring() -> None:
    with pytest.raises(RtpError):
        FrameRing(1, depth=4, delay=4)


# --------------------------------------------------------------------------- BatchSocket on loopback


def plain_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    return sock


def test_address_keys_round_trip() -> None:
    assert key_address(address_key("127.1.2.3", 40000)) == ("127.1.2.3", 40000)


def test_recv_reads_a_burst_in_batches_with_sources_and_lengths() -> None:
    io = BatchSocket.bind("127.0.0.1")
    senders = [plain_socket() for _ in range(3)]
    try:
        assert io.recv() == 0  # nothing waiting: no exception, no blocking
        target = io.sock.getsockname()
        sent = []
        for i in range(1500):  # more than one recvmmsg batch (1024)
            payload = i.to_bytes(2, "big") * (1 + i % 7)
            senders[i % 3].sendto(payload, target)
            sent.append((address_key(*senders[i % 3].getsockname()), payload))
        received = []
        for _ in range(100):
            n = io.recv()
            received += [(int(io.sources[k]), bytes(io.data[k, : io.lengths[k]])) for k in range(n)]
            if len(received) == len(sent):
                break
        assert received == sent
    finally:
        io.close()
        for s in senders:
            s.close()


def test_recv_marks_a_datagram_longer_than_a_row() -> None:
    io = BatchSocket(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), datagram=64)
    io.sock.bind(("127.0.0.1", 0))
    sender = plain_socket()
    try:
        sender.sendto(b"x" * 100, io.sock.getsockname())
        sender.sendto(b"y" * 64, io.sock.getsockname())
        got: list[int] = []
        while len(got) < 2:
            n = io.recv()
            got += io.lengths[:n].tolist()
        assert got == [65, 64]  # 65: did not fit (never parsed as valid: longer than the row)
    finally:
        io.close()
        sender.close()


def test_send_delivers_each_row_to_its_destination() -> None:
    io = BatchSocket.bind("127.0.0.1")
    receivers = [plain_socket() for _ in range(4)]
    try:
        packets = np.arange(4 * 12, dtype=np.uint8).reshape(4, 12).copy()
        keys = np.array([address_key(*r.getsockname()) for r in receivers], dtype=np.uint64)
        lengths = np.array([12, 5, 1, 12], dtype=np.int64)
        assert io.send(packets, keys, lengths) == 4
        for r, row, size in zip(receivers, packets, lengths, strict=True):
            data, source = r.recvfrom(100)
            assert data == row[:size].tobytes()
            assert source == io.sock.getsockname()
    finally:
        io.close()
        for r in receivers:
            r.close()


def test_send_picks_each_source_address_with_pktinfo() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")  # wildcard, but loopback only
    sock.bind(("0.0.0.0", 0))
    io = BatchSocket(sock)
    receiver = plain_socket()
    try:
        hosts = np.array([address_key(f"127.1.0.{i}", 0) >> 16 for i in (1, 2, 3)], dtype=np.uint32)
        keys = np.full(3, address_key(*receiver.getsockname()), dtype=np.uint64)
        assert io.send(np.zeros((3, 8), np.uint8), keys, source_hosts=hosts) == 3
        sources = {receiver.recvfrom(100)[1][0] for _ in range(3)}
        assert sources == {"127.1.0.1", "127.1.0.2", "127.1.0.3"}
    finally:
        io.close()
        receiver.close()


def test_send_rejects_a_non_contiguous_array() -> None:
    io = BatchSocket.bind("127.0.0.1")
    try:
        with pytest.raises(RtpError):
            io.send(np.zeros((4, 12), np.uint8)[:, ::2], np.zeros(4, np.uint64))
    finally:
        io.close()


def test_batch_socket_needs_ipv4_udp() -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(RtpError):
            BatchSocket(tcp)
    finally:
        tcp.close()


def test_leg_table_routes_each_known_source_to_its_leg_and_counts_the_rest() -> None:
    io = BatchSocket.bind("127.0.0.1")
    legs = [plain_socket() for _ in range(2)]
    stranger = plain_socket()
    try:
        target = io.sock.getsockname()
        table = LegTable(np.array([address_key(*s.getsockname()) for s in legs], dtype=np.uint64), frame=4)
        ring = FrameRing(2, depth=8, delay=0, frame=4)

        def rtp(seq: int, payload: bytes, pt: int = 0, csrc: list[int] | None = None) -> bytes:
            return bytes(RtpPacket(payload_type=pt, sequence_number=seq, payload=payload, csrc=csrc or []))

        legs[1].sendto(rtp(7, b"bbbb", csrc=[1, 2]), target)  # a CSRC list: the payload starts later
        legs[0].sendto(rtp(3, b"aaaa"), target)
        stranger.sendto(rtp(3, b"xxxx"), target)  # not a leg
        legs[0].sendto(rtp(4, b"cc"), target)  # a short frame
        legs[0].sendto(rtp(5, b"dddd", pt=8), target)  # another payload type
        legs[0].sendto(b"\x00" * 20, target)  # not RTP
        got = 0
        for _ in range(100):
            got += table.receive(io, ring)
            if table.taken + table.foreign + table.rejected == 6:
                break
        assert (got, table.taken, table.foreign, table.rejected) == (2, 2, 1, 3)
        out, hit = ring.pop()
        assert hit.tolist() == [True, True] and out.tobytes() == b"aaaabbbb"
    finally:
        io.close()
        for s in (*legs, stranger):
            s.close()


@given(st.lists(st.integers(0, 5), max_size=20))
def test_rounds_split_keys_into_rounds_of_distinct_keys_in_arrival_order(keys: list[int]) -> None:
    picks = rounds(np.array(keys, dtype=np.int64))
    expected: list[list[int]] = []
    seen: dict[int, int] = {}
    for index, key in enumerate(keys):  # a key's k-th occurrence belongs to round k
        k = seen.get(key, 0)
        seen[key] = k + 1
        if k == len(expected):
            expected.append([])
        expected[k].append(index)
    assert [pick.tolist() for pick in picks] == (expected or [[]])
