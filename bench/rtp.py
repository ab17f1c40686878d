"""RTP benchmark: packets per second per core through :class:`bridge.rtp.RtpEndpoint`, against raw sockets.

    .venv/bin/python bench/rtp.py [--legs 200,500] [--seconds 5]

This process owns ``legs`` RTP legs on loopback. A load generator (a subprocess of this script,
``--generator``) sends one 160-byte PCMU packet per leg every 20 ms (sequence/timestamp advancing, one SSRC
per leg) from a single socket and drains what comes back. Every 20 ms tick, on absolute time, this process
does for every leg what the engine does: ``read_frame(now)`` (jitter buffer) and ``write_frame(payload)``
(one RTP packet out).

Five runs per load level, same generator, same tick loop:

- ``endpoint``: real :class:`RtpEndpoint` objects (asyncio datagram protocol, header parse, symmetric-RTP
  latching, RFC 3550 statistics, jitter buffer, RTCP timer, sequence/timestamp on send);
- ``poller``: the same endpoints opened with an :class:`RtpPoller` (RTP read on the tick through one epoll,
  kernel arrival timestamps); ``poller-tick``: the same with ``kernel_timestamps=False``;
- ``raw`` (baseline for ``endpoint``): an asyncio datagram protocol per leg with ``max_size = 2048`` that only
  counts what it receives, and sends a pre-built packet per tick: the cost of the sockets and the event loop;
- ``pull`` (baseline for ``poller``): plain non-blocking sockets, each read until EAGAIN on the tick, a
  pre-built packet sent: the sockets alone, no event-loop callbacks.

Reported: CPU seconds of this process (``time.process_time``) over the measured window, packets in+out,
microseconds of CPU per packet, packets/s per core, % of one core per leg, and endpoint/raw ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.rtp import MediaDescription, PortAllocator, RtpEndpoint, RtpPoller  # noqa: E402

HOST = "127.0.0.1"
HEADER = struct.Struct("!BBHII")
FRAME = 160
WARMUP_S = 1.0


def generator() -> int:
    """Subprocess: one RTP packet per port per 20 ms for ``seconds``; reads {"ports", "seconds"} on stdin."""
    job = json.loads(sys.stdin.readline())
    ports, seconds = job["ports"], job["seconds"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    sys.stdin.readline()  # go
    payload = bytes(range(64, 224)) * (FRAME // 160)
    received = 0
    start = time.monotonic()
    tick = 0
    while True:
        now = time.monotonic()
        if now - start > seconds:
            break
        for i, port in enumerate(ports):
            header = HEADER.pack(0x80, 0, tick & 0xFFFF, (tick * FRAME) & 0xFFFFFFFF, 0x10000 + i)
            try:
                sock.sendto(header + payload, (HOST, port))
            except BlockingIOError:
                pass
        while True:
            try:
                sock.recv(2048)
                received += 1
            except BlockingIOError:
                break
        tick += 1
        time.sleep(max(0.0, start + tick * 0.02 - time.monotonic()))
    print(json.dumps({"sent": tick * len(ports), "received": received}), flush=True)
    return 0


class RawLeg(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received = 0
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.max_size = 2048  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1


async def run(mode: str, legs: int, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    low = random.randrange(20000, 60000 - 4 * legs - 400, 2)
    allocator = PortAllocator(low, low + 4 * legs + 400)  # twice what is needed: busy ports are skipped
    endpoints: list[RtpEndpoint] = []
    raw: list[RawLeg] = []
    transports: list[Any] = []
    socks: list[socket.socket] = []
    pulled = 0
    poller = RtpPoller(kernel_timestamps=mode == "poller") if mode.startswith("poller") else None
    if mode == "endpoint" or poller is not None:
        for _ in range(legs):
            endpoints.append(await RtpEndpoint.open(loop, allocator, host=HOST, poller=poller))
        ports = [e.local_port for e in endpoints]
    elif mode == "raw":
        while len(transports) < legs:
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    RawLeg, local_addr=(HOST, allocator.allocate())
                )
            except OSError:
                continue  # busy: another process holds it
            raw.append(protocol)
            transports.append(transport)
        ports = [t.get_extra_info("sockname")[1] for t in transports]
    else:  # pull: plain non-blocking sockets drained once per tick, no event-loop callbacks
        while len(socks) < legs:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((HOST, allocator.allocate()))
            except OSError:
                sock.close()
                continue  # busy: another process holds it
            sock.setblocking(False)
            socks.append(sock)
        ports = [s.getsockname()[1] for s in socks]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--generator"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps({"ports": ports, "seconds": seconds + WARMUP_S + 0.5}) + "\n")
    proc.stdin.flush()
    gen_port = json.loads(proc.stdout.readline())["port"]
    media = MediaDescription(HOST, gen_port, "PCMU", 0, 101, "sendrecv")
    for endpoint in endpoints:
        endpoint.start(media)
    packet = HEADER.pack(0x80, 0, 1, 160, 1) + bytes(FRAME)
    silence = b"\xff" * FRAME
    proc.stdin.write("go\n")
    proc.stdin.flush()
    start = loop.time()
    tick = 0
    measuring = False
    cpu0 = wall0 = 0.0
    in0 = out0 = 0
    end = start + WARMUP_S + seconds

    def counts() -> tuple[int, int]:
        if endpoints:
            stats = [e.session for e in endpoints]
            return sum(s.packets_in for s in stats), sum(s.packets_out for s in stats)
        if socks:
            return pulled, tick * legs
        return sum(r.received for r in raw), tick * legs

    while True:
        now = loop.time()
        if now >= end:
            break
        if not measuring and now - start >= WARMUP_S:
            measuring = True
            cpu0, wall0 = time.process_time(), now
            in0, out0 = counts()
        if endpoints:
            if poller is not None:
                poller.poll(now)
            for endpoint in endpoints:
                frame = endpoint.read_frame(now)
                endpoint.write_frame(silence if frame is None else frame)
        elif socks:
            target = (HOST, gen_port)
            for sock in socks:
                while True:
                    try:
                        sock.recvfrom(2048)
                    except BlockingIOError:
                        break
                    pulled += 1
                sock.sendto(packet, target)
        else:
            for transport in transports:
                transport.sendto(packet, (HOST, gen_port))
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * 0.02 - loop.time()))
    cpu = time.process_time() - cpu0
    wall = loop.time() - wall0
    packets_in, packets_out = counts()
    packets_in -= in0
    packets_out -= out0
    for endpoint in endpoints:
        endpoint.close()
    for transport in transports:
        transport.close()
    for sock in socks:
        sock.close()
    result = json.loads(proc.stdout.readline())
    proc.wait(10)
    packets = packets_in + packets_out
    return {
        "mode": mode,
        "legs": legs,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 3),
        "packets_in": packets_in,
        "packets_out": packets_out,
        "us_per_packet": round(cpu / packets * 1e6, 2) if packets else None,
        "packets_per_core_s": round(packets / cpu) if cpu else None,
        "core_pct_per_leg": round(cpu / wall / legs * 100, 4),
        "generator_sent": result["sent"],
        "generator_received": result["received"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", default="200,500")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generator:
        return generator()
    print(f"{'mode':>11} {'legs':>5} {'wall s':>6} {'cpu s':>7} {'pkts in':>8} {'pkts out':>8} {'us/pkt':>7} "
          f"{'pkts/s/core':>11} {'%core/leg':>9}")  # fmt: skip
    print("(packets in + out over the measured window; fewer than legs x 50/s x wall means the loop was starved)")
    for legs in (int(n) for n in args.legs.split(",")):
        modes = ("pull", "raw", "endpoint", "poller", "poller-tick")
        rows = {mode: asyncio.run(run(mode, legs, args.seconds)) for mode in modes}
        for row in rows.values():
            cells = [row["mode"], row["legs"], row["wall_s"], row["cpu_s"], row["packets_in"], row["packets_out"],
                     row["us_per_packet"], row["packets_per_core_s"], row["core_pct_per_leg"]]  # fmt: skip
            print(" ".join(f"{c!s:>{w}}" for c, w in zip(cells, (11, 5, 6, 7, 8, 8, 7, 11, 9), strict=True)))
        for mode, base in (("endpoint", "raw"), ("poller", "pull"), ("poller-tick", "pull")):
            ratio = rows[mode]["us_per_packet"] / rows[base]["us_per_packet"]
            print(f"{'':>11} {legs:>5} {mode} / {base} CPU per packet = {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
