"""RtpPoller on loopback sockets with a recording sink: draining, the per-tick bound, arrival stamps, unregister."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.rtp.poller import MAX_ROUNDS, RtpPoller

HOST = "127.0.0.1"


class Sink:
    """Records what the poller hands over, as an RtpEndpoint would receive it."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, Any, float]] = []

    def datagram(self, data: bytes, addr: Any, arrival: float) -> None:
        self.got.append((data, addr, arrival))


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind((HOST, 0))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind((HOST, 0))
    yield receiver, sender
    receiver.close()
    sender.close()


def wait_readable(sock: socket.socket) -> None:
    """Loopback delivery is immediate, but give the kernel a bounded moment on a busy machine."""
    import select

    select.select([sock], [], [], 5.0)


@pytest.mark.parametrize("kernel_timestamps", [True, False])
def test_poll_hands_each_datagram_once_with_its_source(
    sockets: tuple[socket.socket, socket.socket], kernel_timestamps: bool
) -> None:
    receiver, sender = sockets
    poller = RtpPoller(kernel_timestamps=kernel_timestamps)
    sink = Sink()
    poller.register(receiver, sink)
    sender.sendto(b"one", receiver.getsockname())
    sender.sendto(b"two", receiver.getsockname())
    wait_readable(receiver)
    now = 1000.0
    assert poller.poll(now) == 2
    assert [data for data, _, _ in sink.got] == [b"one", b"two"]
    assert all(addr == sender.getsockname() for _, addr, _ in sink.got)
    assert poller.received == 2
    assert poller.poll(now) == 0  # drained: nothing is handed twice
    if not kernel_timestamps:
        assert all(arrival == now for _, _, arrival in sink.got)
    poller.close()


def test_kernel_stamps_are_mapped_onto_the_loop_clock(sockets: tuple[socket.socket, socket.socket]) -> None:
    receiver, sender = sockets
    poller = RtpPoller(kernel_timestamps=True)
    sink = Sink()
    poller.register(receiver, sink)
    sender.sendto(b"x", receiver.getsockname())
    wait_readable(receiver)
    loop_now = 50.0  # an arbitrary loop clock: the stamp must land just before it, not at wall-clock time
    poller.poll(loop_now)
    [(_, _, arrival)] = sink.got
    assert loop_now - 5.0 <= arrival <= loop_now + 0.001
    poller.close()


def test_a_backlog_is_read_at_most_max_rounds_per_poll(sockets: tuple[socket.socket, socket.socket]) -> None:
    receiver, sender = sockets
    poller = RtpPoller(kernel_timestamps=False)
    sink = Sink()
    poller.register(receiver, sink)
    backlog = MAX_ROUNDS * 2 + 1
    for i in range(backlog):
        sender.sendto(bytes([i]), receiver.getsockname())
    deadline = time.monotonic() + 5.0
    counts = []
    while len(sink.got) < backlog and time.monotonic() < deadline:
        counts.append(poller.poll(0.0))
    assert max(counts) <= MAX_ROUNDS  # one socket gives at most MAX_ROUNDS datagrams per tick
    assert [data[0] for data, _, _ in sink.got] == list(range(backlog))  # and nothing is lost, in order
    poller.close()


def test_unregistered_socket_is_no_longer_read(sockets: tuple[socket.socket, socket.socket]) -> None:
    receiver, sender = sockets
    poller = RtpPoller(kernel_timestamps=False)
    sink = Sink()
    poller.register(receiver, sink)
    assert len(poller) == 1
    poller.unregister(receiver)
    poller.unregister(receiver)  # twice is harmless (close after a failed open)
    assert len(poller) == 0
    sender.sendto(b"late", receiver.getsockname())
    wait_readable(receiver)
    assert poller.poll(0.0) == 0
    assert sink.got == []
    poller.close()
