"""The batched path's send thread (bridge/rtp/sender.py) on loopback sockets."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from bridge.rtp.batch import BatchSocket, address_key
from bridge.rtp.sender import SendThread, realtime


@pytest.fixture
def pair() -> Iterator[tuple[BatchSocket, socket.socket]]:
    out = BatchSocket.bind("127.0.0.1", buffer=1 << 20)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(5)
    yield out, sink
    out.close()
    sink.close()


def test_staged_rows_are_sent_as_they_were_when_staged(pair: tuple[BatchSocket, socket.socket]) -> None:
    out, sink = pair
    table = np.arange(4 * 8, dtype=np.uint8).reshape(4, 8)
    dest = np.full(2, address_key(*sink.getsockname()), dtype=np.uint64)
    sender = SendThread()
    try:
        sender.submit([(out, out.prepare(table, dest, np.array([3, 1])))])
        table[:] = 0  # the caller goes on with its table at once
        sender.wait()
        assert [sink.recv(64) for _ in range(2)] == [bytes(range(24, 32)), bytes(range(8, 16))]
        sender.submit([(out, out.prepare(table, dest[:1], np.array([0])))])  # waits for nothing, sends in order
        sender.wait()
        assert sink.recv(64) == bytes(8) and sender.jobs == 2
    finally:
        sender.close()


def test_a_failing_job_is_counted_and_the_thread_goes_on(pair: tuple[BatchSocket, socket.socket]) -> None:
    out, sink = pair

    class Broken:
        send_errors = 0

        def transmit(self, count: int) -> int:
            raise ValueError("broken")

    broken = Broken()
    sender = SendThread()
    try:
        dest = np.full(1, address_key(*sink.getsockname()), dtype=np.uint64)
        sender.submit([(broken, 1), (out, out.prepare(np.ones((1, 4), dtype=np.uint8), dest, np.array([0])))])  # type: ignore[list-item]
        sender.wait()
        assert broken.send_errors == 1 and sink.recv(64) == b"\x01" * 4
    finally:
        sender.close()
    with pytest.raises(RuntimeError):
        sender.submit([])


def _policy_in_thread(priority: int) -> tuple[str | None, int, int]:
    """In a new thread: realtime(priority), then that thread's policy and the policy of a thread it starts."""
    result: list[tuple[str | None, int, int]] = []
    child: list[int] = []

    def run() -> None:
        refused = realtime(priority)
        grandchild = threading.Thread(target=lambda: child.append(os.sched_getscheduler(0)))
        grandchild.start()
        grandchild.join()
        result.append((refused, os.sched_getscheduler(0), child[0]))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result[0]


def test_realtime_priority_is_for_the_calling_thread_only() -> None:
    assert realtime(0) is None and os.sched_getscheduler(0) == os.SCHED_OTHER
    refused, policy, child = _policy_in_thread(7)
    if os.geteuid() != 0:  # without CAP_SYS_NICE the kernel refuses, and says why
        assert refused and policy == os.SCHED_OTHER
        return
    assert refused is None and policy & ~os.SCHED_RESET_ON_FORK == os.SCHED_RR
    assert child == os.SCHED_OTHER  # threads it starts run ordinary scheduling
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the test's own thread was not touched
