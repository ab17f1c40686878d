"""The batched media path under ``bridge run``: a stranger blasting RTP at the appliance's RTP ports is never
heard by anyone, while two SIPp callers in an open room (same SSRC, sequence and timestamps) hear each other.

The stranger sends a 1 kHz tone with the callers' own SSRC to every port of ``[sip] rtp_ports`` (so the shared
socket is hit whatever port it has): from another host (127.0.0.2) from before the calls, and from the callers'
host (127.0.0.1, another port) once they are in (a neighbour on the gateway's host before a leg heard its
first packet could latch it, until the SDP address takes the stream back: the per-leg rule). The FFT of what
each caller received has no 1 kHz in it.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.integration import test_room_dial_in as room
from tests.integration.ic_harness import MEDIA_PATH, Appliance
from tests.integration.rtp_peers import lin2ulaw, rtp, tone
from tests.integration.test_room_dial_in import (
    HOST,
    OPEN,
    SSRC,
    Caller,
    _assert_hear_each_other,
    _connected,
    share,
    wait_for,
    write_caller_pcap,
)

bridge = room.bridge  # the appliance with the open room (fixture)
callers = room.callers  # SIPp callers stopped at the end (fixture)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(MEDIA_PATH != "batched", reason="the shared RTP socket exists on the batched path only"),
]


def blast(host: str, ports: range, stop: threading.Event, counts: list[int]) -> None:
    """A 1 kHz tone at every port from ``host``, every 20 ms, until ``stop``."""
    encoded = lin2ulaw(tone(1000, 1.0))
    senders = []
    for source in (host,):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source, 0))
        senders.append(sock)
    sent = seq = 0
    try:
        while not stop.is_set():
            payload = encoded[(seq % 50) * 160 : (seq % 50 + 1) * 160]
            packet = rtp(0, 1000 + seq, 160 * (1000 + seq), SSRC, payload)
            for sock in senders:
                for port in ports:
                    sock.sendto(packet, ("127.0.0.1", port))
                    sent += 1
            seq += 1
            time.sleep(0.02)
    finally:
        for sock in senders:
            sock.close()
    counts.append(sent)


def test_a_stranger_on_the_shared_port_is_never_heard(bridge: Appliance, callers: list[Caller], tmp_path: Path) -> None:
    found = re.search(r'rtp_ports = "(\d+)-(\d+)"', bridge.config_path.read_text())
    assert found is not None
    low_port, high_port = int(found[1]), int(found[2])
    write_caller_pcap(tmp_path / "low.pcap", freq=440, secs=9)
    write_caller_pcap(tmp_path / "high.pcap", freq=880, secs=9)
    stop = threading.Event()
    counts: list[int] = []
    ports = range(low_port, high_port + 1, 2)
    strangers = [threading.Thread(target=blast, args=(host, ports, stop, counts)) for host in ("127.0.0.2", HOST)]
    strangers[0].start()  # before the calls: there first, before any leg latched
    try:
        low = Caller(tmp_path, "low", bridge, OPEN, pcap="low.pcap", hold_s=9)
        callers.append(low)
        high = Caller(tmp_path, "high", bridge, OPEN, pcap="high.pcap", hold_s=9)
        callers.append(high)
        wait_for(lambda: _connected(bridge, "Open room", 2), 15, "both callers in the open room")
        both_in = time.monotonic()
        strangers[1].start()
        time.sleep(5)
    finally:
        stop.set()
        for thread in strangers:
            if thread.is_alive():
                thread.join()
    assert len(counts) == 2 and min(counts) > 1000
    _assert_hear_each_other(low, high, both_in + 3.0, both_in + 5.0)
    for caller in (low, high):
        heard = caller.heard(0, both_in + 5.0)
        assert share(heard, 1000) < 0.01, (caller.name, "hears the stranger", share(heard, 1000))
