"""RtpEndpoint glue on loopback sockets: binding, media both ways, DTMF, RTCP, timeout, close."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import struct
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from bridge.mixer.g711 import decode, encode
from bridge.rtp import PortAllocator, PortsExhausted, RtpEndpoint
from bridge.rtp.packet import RtcpReceiverReport, RtcpSenderReport, parse_rtcp
from bridge.rtp.poller import RtpPoller
from bridge.rtp.sdp import answer_offer, make_offer, parse_answer

HOST = "127.0.0.1"


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (fixtures pass through ``functools.wraps``)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 60))

    return wrapper


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


async def pair(allocator: PortAllocator, **kwargs: object) -> tuple[RtpEndpoint, RtpEndpoint]:
    loop = asyncio.get_running_loop()
    a = await RtpEndpoint.open(loop, allocator, host=HOST)
    b = await RtpEndpoint.open(loop, allocator, host=HOST, **kwargs)  # type: ignore[arg-type]
    answer, remote_a = answer_offer(make_offer(HOST, a.local_port, session_id=1), HOST, b.local_port, session_id=2)
    b.start(remote_a)
    a.start(parse_answer(answer))
    return a, b


@run
async def test_tone_and_digits_cross_loopback_and_close_releases_ports(allocator: PortAllocator) -> None:
    digits: list[str] = []
    a, b = await pair(allocator, on_dtmf=digits.append)
    assert a.local_port % 2 == 0 and b.local_port % 2 == 0
    loop = asyncio.get_running_loop()
    pcm = np.round(8000 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000)).astype(np.int16)
    encoded = encode(pcm, "PCMU").tobytes()
    frames = []
    for i in range(50):
        a.write_frame(encoded[i * 160 : (i + 1) * 160])
        if i == 20:
            a.send_dtmf("7")
        await asyncio.sleep(0.02)
        frame = b.read_frame(loop.time())
        if frame is not None:
            frames.append(frame)
    await until(lambda: digits == ["7"])
    x = decode(b"".join(frames), "PCMU").astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    assert abs(np.fft.rfftfreq(len(x), 1 / 8000)[int(np.argmax(spectrum))] - 1000) < 10
    assert b.stats()["packets_in"] == a.stats()["packets_out"] > 40
    assert b.stats()["remote"] == f"{HOST}:{a.local_port}"
    a.close()
    b.close()
    a.close()  # idempotent
    assert allocator.in_use == 0


@run
async def test_busy_ports_are_skipped_and_exhaustion_raises() -> None:
    loop = asyncio.get_running_loop()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind((HOST, 0))
    busy = blocker.getsockname()[1]
    busy -= busy % 2
    try:
        blocker.close()
        blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        blocker.bind((HOST, busy + 1))  # the RTCP half of the first pair is taken
        with pytest.raises(PortsExhausted):
            await RtpEndpoint.open(loop, PortAllocator(busy, busy + 1), host=HOST)
        allocator = PortAllocator(busy, busy + 5)
        endpoint = await RtpEndpoint.open(loop, allocator, host=HOST)
        assert endpoint.local_port != busy
        endpoint.close()
    finally:
        blocker.close()


@run
async def test_max_size_is_cut_to_2048(allocator: PortAllocator) -> None:
    endpoint = await RtpEndpoint.open(asyncio.get_running_loop(), allocator, host=HOST)
    try:
        assert endpoint._rtp is not None and endpoint._rtp.max_size == 2048  # type: ignore[attr-defined]
    finally:
        endpoint.close()


@run
async def test_rtp_timeout_fires_once(allocator: PortAllocator) -> None:
    fired: list[float] = []
    loop = asyncio.get_running_loop()
    endpoint = await RtpEndpoint.open(
        loop, allocator, host=HOST, rtp_timeout_s=0.3, on_timeout=lambda: fired.append(loop.time())
    )
    try:
        endpoint.start(parse_answer(make_offer(HOST, 9, session_id=1)))
        await until(lambda: bool(fired))
        await asyncio.sleep(1.2)
        assert len(fired) == 1
    finally:
        endpoint.close()


@run
async def test_callback_errors_do_not_break_the_media(
    allocator: PortAllocator, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(digit: str) -> None:
        raise RuntimeError("callback bug")

    a, b = await pair(allocator, on_dtmf=boom)
    try:
        a.send_dtmf("1")
        with caplog.at_level(logging.ERROR):
            for _ in range(12):
                a.write_frame(bytes([0xFF]) * 160)
                await asyncio.sleep(0.02)
            await until(lambda: b.stats()["dtmf_received"] == 1)
        assert "on_dtmf callback failed" in caplog.text
        assert b.stats()["packets_in"] > 0
    finally:
        a.close()
        b.close()


@run
async def test_rtcp_reports_reach_a_plain_socket_peer(allocator: PortAllocator) -> None:
    loop = asyncio.get_running_loop()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((HOST, 0))
    rtcp_peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = peer.getsockname()[1]
    try:
        rtcp_peer.bind((HOST, port + 1))
    except OSError:
        pytest.fail("port + 1 of a fresh port is taken; rerun")  # not a skip: a rare collision
    rtcp_peer.setblocking(False)
    endpoint = await RtpEndpoint.open(loop, allocator, host=HOST, rtcp_interval_s=0.2)
    try:
        endpoint.start(parse_answer(make_offer(HOST, port, session_id=1)))
        for seq in range(5):
            peer.sendto(struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xABC) + bytes(160), (HOST, endpoint.local_port))
            endpoint.write_frame(bytes(160))
        data = await asyncio.wait_for(loop.sock_recv(rtcp_peer, 2048), 10)
        report = parse_rtcp(data)[0]
        assert isinstance(report, RtcpSenderReport | RtcpReceiverReport)
        assert report.reports and report.reports[0].ssrc == 0xABC
    finally:
        endpoint.close()
        peer.close()
        rtcp_peer.close()


@run
async def test_garbage_datagrams_on_both_ports_are_survived(
    allocator: PortAllocator, caplog: pytest.LogCaptureFixture
) -> None:
    import random

    digits: list[str] = []
    a, b = await pair(allocator, on_dtmf=digits.append)
    rng = random.Random(4733)
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with caplog.at_level(logging.WARNING):
            for i in range(400):
                size = rng.choice([0, 1, 4, 11, 12, 13, 40, 172, 1500, 4000])
                data = bytearray(rng.randbytes(size))
                if size >= 2 and i % 2:
                    data[0] = 0x80 | (data[0] & 0x3F)  # plausible RTP/RTCP first byte
                    data[1] = rng.choice([0, 101, 200, 201, 202, 203, 0x80 | 101])
                attacker.sendto(bytes(data), (HOST, b.local_port + rng.randrange(2)))
            await asyncio.sleep(0.2)
            a.send_dtmf("3")
            for _ in range(12):
                a.write_frame(bytes([0xFF]) * 160)
                b.read_frame(asyncio.get_running_loop().time())
                await asyncio.sleep(0.02)
            await until(lambda: digits == ["3"])
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert b.stats()["remote"] == f"{HOST}:{a.local_port}"  # garbage did not steal the latch
    finally:
        attacker.close()
        a.close()
        b.close()


class _Relay(asyncio.DatagramProtocol):
    """A bad network between two endpoints: drops the n-th packet for every n in ``drop``, delays the others
    by a random 0-50 ms (so they also arrive out of order)."""

    def __init__(self, target: tuple[str, int], drop: set[int], seed: int) -> None:
        import random

        self.target, self.drop, self.rng = target, drop, random.Random(seed)
        self.transport: Any = None
        self.reordered = 0
        self.count = 0
        self._last = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        n, self.count = self.count, self.count + 1
        if n in self.drop:
            return
        delay = self.rng.uniform(0.0, 0.05) if n >= 3 else 0.0  # RFC 3550 A.1 counts from the first packet
        asyncio.get_running_loop().call_later(delay, self._forward, data, n)

    def _forward(self, data: bytes, n: int) -> None:
        if n < self._last:
            self.reordered += 1
        self._last = max(self._last, n)
        self.transport.sendto(data, self.target)


@run
async def test_tone_survives_loss_jitter_and_reordering(allocator: PortAllocator) -> None:
    loop = asyncio.get_running_loop()
    a = await RtpEndpoint.open(loop, allocator, host=HOST)
    b = await RtpEndpoint.open(loop, allocator, host=HOST)
    drop = set(range(7, 130, 20))  # about 5 %
    transport, relay = await loop.create_datagram_endpoint(
        lambda: _Relay((HOST, b.local_port), drop, seed=3550), local_addr=(HOST, 0)
    )
    relay_port = transport.get_extra_info("sockname")[1]
    a.start(parse_answer(make_offer(HOST, relay_port, session_id=1)))
    b.start(parse_answer(make_offer(HOST, a.local_port, session_id=2)))
    pcm = np.round(8000 * np.sin(2 * np.pi * 440 * np.arange(8000 * 3) / 8000)).astype(np.int16)
    encoded = encode(pcm, "PCMU").tobytes()
    frames = []
    try:
        next_tick = loop.time()
        for i in range(150):
            a.write_frame(encoded[i * 160 : (i + 1) * 160])
            frame = b.read_frame(loop.time())
            if frame is not None:
                frames.append(frame)
            next_tick += 0.02
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
        await until(lambda: b.stats()["packets_in"] == 150 - len(drop))
    finally:
        a.close()
        b.close()
        transport.close()
    stats = b.stats()
    assert relay.reordered > 0  # the network really reordered
    assert stats["lost"] == len(drop)
    assert stats["jitter_ms"] > 1.0
    assert stats["concealed"] > 0
    x = decode(b"".join(frames), "PCMU").astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / 8000)
    peak = int(np.argmax(spectrum))
    assert abs(freqs[peak] - 440) < 5
    assert spectrum[np.abs(freqs - 440) <= 20].sum() / spectrum.sum() > 0.8


@pytest.mark.parametrize("kernel_timestamps", [True, False])
@run
async def test_poller_mode_reads_on_the_tick(allocator: PortAllocator, kernel_timestamps: bool) -> None:
    loop = asyncio.get_running_loop()
    poller = RtpPoller(kernel_timestamps=kernel_timestamps)
    digits: list[str] = []
    a = await RtpEndpoint.open(loop, allocator, host=HOST, poller=poller)
    b = await RtpEndpoint.open(loop, allocator, host=HOST, poller=poller, on_dtmf=digits.append)
    assert len(poller) == 2
    answer, remote_a = answer_offer(make_offer(HOST, a.local_port, session_id=1), HOST, b.local_port, session_id=2)
    b.start(remote_a)
    a.start(parse_answer(answer))
    pcm = np.round(8000 * np.sin(2 * np.pi * 700 * np.arange(8000) / 8000)).astype(np.int16)
    encoded = encode(pcm, "PCMU").tobytes()
    frames = []
    started = next_tick = loop.time()
    try:
        for i in range(60):
            now = loop.time()
            poller.poll(now)
            frame = b.read_frame(now)
            if frame is not None:
                frames.append(frame)
            a.write_frame(encoded[i * 160 : (i + 1) * 160] if i < 50 else b"\xff" * 160)
            if i == 45:
                a.send_dtmf("6", 60)
            next_tick += 0.02
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
        await until(lambda: (poller.poll(loop.time()), digits)[1] == ["6"])
    finally:
        a.close()
        b.close()
    assert len(poller) == 0
    assert b.session.last_received is not None
    assert started <= b.session.last_received <= loop.time()  # arrival times mapped onto the loop clock
    assert poller.received == b.stats()["packets_in"] == a.stats()["packets_out"]
    assert b.stats()["jitter_ms"] >= 0.0 and b.stats()["lost"] == 0
    x = decode(b"".join(frames[:40]), "PCMU").astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    assert abs(np.fft.rfftfreq(len(x), 1 / 8000)[int(np.argmax(spectrum))] - 700) < 10
    poller.close()


@run
async def test_poller_reads_a_backlog_over_several_ticks(allocator: PortAllocator) -> None:
    from bridge.rtp.poller import MAX_ROUNDS

    loop = asyncio.get_running_loop()
    poller = RtpPoller()
    endpoint = await RtpEndpoint.open(loop, allocator, host=HOST, poller=poller)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((HOST, 0))
    try:
        endpoint.start(parse_answer(make_offer(HOST, peer.getsockname()[1], session_id=1)))
        backlog = 3 * MAX_ROUNDS + 1
        for seq in range(backlog):
            peer.sendto(struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 9) + bytes(160), (HOST, endpoint.local_port))
        await asyncio.sleep(0.1)
        reads = [poller.poll(loop.time()) for _ in range(5)]
        assert reads == [MAX_ROUNDS, MAX_ROUNDS, MAX_ROUNDS, 1, 0]  # bounded per tick, nothing lost
        assert endpoint.stats()["packets_in"] == backlog
    finally:
        endpoint.close()
        peer.close()
        poller.close()
